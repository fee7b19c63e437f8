using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Xunit.Abstractions;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// The terminal harness and the CLI's side of the spend-cap notice, without the gateway: a stand-in for
/// <c>/v1/messages</c> answers with exactly the <c>anthropic-ratelimit-unified-*</c> headers the gateway is to send,
/// and Claude Code's interactive session shows the notice from them, and nothing without them. When the gateway's
/// test of the notice fails, this one tells whether the CLI or the gateway changed.
/// </summary>
public sealed class ClaudeTmuxSessionTests(ITestOutputHelper log) : IAsyncLifetime
{
    private const string Answer = "Hello from the stand-in.";
    private static readonly TimeSpan ScreenWait = TimeSpan.FromSeconds(30);
    private WebApplication _app = null!;
    private int _answered;
    private readonly DateTimeOffset _reset = DateTimeOffset.UtcNow.AddDays(5);

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _app = builder.Build();
        // The first answer finds her at half her cap, every later one at 82 %.
        _app.MapPost("/v1/messages", async (HttpContext context) =>
        {
            using var request = await JsonDocument.ParseAsync(context.Request.Body);
            var warned = Interlocked.Increment(ref _answered) > 1;
            var headers = context.Response.Headers;
            var status = warned ? "allowed_warning" : "allowed";
            headers["anthropic-ratelimit-unified-status"] = status;
            headers["anthropic-ratelimit-unified-representative-claim"] = "overage";
            headers["anthropic-ratelimit-unified-overage-status"] = status;
            headers["anthropic-ratelimit-unified-overage-utilization"] = warned ? "0.82" : "0.50";
            if (warned)
            {
                headers["anthropic-ratelimit-unified-overage-surpassed-threshold"] = "0.75";
            }
            var reset = _reset.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
            headers["anthropic-ratelimit-unified-reset"] = reset;
            headers["anthropic-ratelimit-unified-overage-reset"] = reset;
            var model = request.RootElement.GetProperty("model").GetString();
            var message = new { id = "msg_standin", type = "message", role = "assistant", model, content = Array.Empty<object>(), stop_reason = (string?)null,
                usage = new { input_tokens = 10, output_tokens = 1 } };
            context.Response.ContentType = "text/event-stream";
            foreach (var (name, data) in new (string, object)[]
            {
                ("message_start", new { type = "message_start", message }),
                ("content_block_start", new { type = "content_block_start", index = 0, content_block = new { type = "text", text = "" } }),
                ("content_block_delta", new { type = "content_block_delta", index = 0, delta = new { type = "text_delta", text = Answer } }),
                ("content_block_stop", new { type = "content_block_stop", index = 0 }),
                ("message_delta", new { type = "message_delta", delta = new { stop_reason = "end_turn" }, usage = new { output_tokens = 6 } }),
                ("message_stop", new { type = "message_stop" }),
            })
            {
                await context.Response.WriteAsync($"event: {name}\ndata: {JsonSerializer.Serialize(data)}\n\n");
            }
        });
        await _app.StartAsync();
    }

    public async Task DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(cts.Token);
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task The_interactive_CLI_shows_the_spend_notice_only_once_an_answer_says_a_threshold_was_passed()
    {
        using var home = ClaudeHome.Create();
        await using var cli = await ClaudeTmuxSession.StartAsync(home, new Dictionary<string, string>
        {
            ["CLAUDE_CODE_USE_GATEWAY"] = "1",
            ["ANTHROPIC_BASE_URL"] = _app.Urls.First(),
            ["ANTHROPIC_AUTH_TOKEN"] = "stand-in",
        });

        await cli.SendAsync("hello");
        await cli.WaitForAsync(Answer, ScreenWait);
        // The CLI shows one notice at a time, its start-up hint first; once that has gone, a notice would be showing.
        var below = await cli.WaitForAsync(s => !s.Contains("/effort", StringComparison.Ordinal), "end of the start-up hint (/effort)", ScreenWait);
        Assert.DoesNotContain("You've used", below);

        await cli.SendAsync("hello again");
        var past = await cli.WaitForAsync("You've used", ScreenWait);
        log.WriteLine(ClaudeTmuxSession.Trimmed(past));
        Assert.Contains($"You've used 82% of your usage credits · resets {_reset.ToString("MMM d", CultureInfo.InvariantCulture)}", past);
        Assert.Equal(2, Volatile.Read(ref _answered));
    }
}
