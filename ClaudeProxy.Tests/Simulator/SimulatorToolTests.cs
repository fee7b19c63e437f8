using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Simulator;

/// <summary>
/// The simulator answers an agent that offers tools (as Claude Code always does) with plain text, so a first `claude`
/// against a fresh system ends its turn; a test that wants a tool call asks for it with <c>x-sim-tools</c>.
/// </summary>
public sealed class SimulatorToolTests
{
    private const string WithTools = """
        {"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":STREAM,"messages":[{"role":"user","content":"hello"}],
         "tools":[{"name":"Bash","description":"run a command","input_schema":{"type":"object","properties":{}}}]}
        """;

    private static async Task<string> AskAsync(SimulatorHost simulator, bool stream, params (string, string)[] headers)
    {
        using var http = new HttpClient { BaseAddress = simulator.BaseUrl };
        using var response = await http.SendAsync(Http.Post("/v1/messages", WithTools.Replace("STREAM", stream ? "true" : "false"), apiKey: simulator.ApiKey, headers: headers))
            .WaitAsync(TimeSpan.FromSeconds(30));
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Offered_tools_get_a_text_answer_that_ends_the_turn()
    {
        await using var simulator = await SimulatorHost.StartAsync(TestSecrets.MasterKey());
        using var json = JsonDocument.Parse(await AskAsync(simulator, stream: false));
        Assert.Equal("end_turn", json.RootElement.GetProperty("stop_reason").GetString());
        var block = Assert.Single(json.RootElement.GetProperty("content").EnumerateArray());
        Assert.Equal("text", block.GetProperty("type").GetString());
        Assert.Contains("simulator", block.GetProperty("text").GetString());

        var events = await AskAsync(simulator, stream: true);
        Assert.DoesNotContain("tool_use", events);
        Assert.Contains("\"stop_reason\":\"end_turn\"", events);
    }

    [Fact]
    public async Task A_test_that_asks_for_a_tool_call_gets_one()
    {
        await using var simulator = await SimulatorHost.StartAsync(TestSecrets.MasterKey());
        using var json = JsonDocument.Parse(await AskAsync(simulator, stream: false, ("x-sim-tools", "1")));
        Assert.Equal("tool_use", json.RootElement.GetProperty("stop_reason").GetString());
        Assert.Contains(json.RootElement.GetProperty("content").EnumerateArray(), b => b.GetProperty("type").GetString() == "tool_use");

        var events = await AskAsync(simulator, stream: true, ("x-sim-tools", "1"));
        Assert.Contains("\"type\":\"tool_use\"", events);
        Assert.Contains("\"stop_reason\":\"tool_use\"", events);
    }
}
