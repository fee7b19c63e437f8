using System.Globalization;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.SignIn;

/// <summary>
/// What a signed-in person sees of their spend cap in Claude Code's own terminal: nothing while they are below 75 % of
/// it, and "You've used NN% of your usage credits · resets …" under the answer once they are past it, from the
/// <c>anthropic-ratelimit-unified-*</c> headers the gateway puts on each answer.
/// </summary>
public sealed partial class ClaudeCodeSignInTests
{
    private const string UsageWarning = "You've used";
    private static readonly TimeSpan ScreenWait = TimeSpan.FromSeconds(30);

    [GeneratedRegex(@"You've used (\d+)% of your usage credits · resets \S")]
    private static partial Regex UsageWarningLine();

    [Fact]
    public async Task Past_three_quarters_of_her_spend_cap_Claude_Code_tells_her_how_much_she_has_used()
    {
        var (gateway, database) = await StartAsync();
        // The simulator serves every test of this class; this gateway stores only what it sent there since now.
        var earlierMessages = MessagesReceived();
        using var home = ClaudeHome.ForGateway(gateway.BaseUrl);
        await SignInAsync(home, gateway, DevIdentityHost.Alice);

        // An operator caps her at 50 dollars this period.
        var userId = await fx.ScalarAsync<string>(database, "SELECT user_id FROM users WHERE email = @e", ("e", DevIdentityHost.Alice.Email));
        using (var operatorClient = new HttpClient { BaseAddress = gateway.ManagementUrl })
        {
            operatorClient.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
            using var capped = await operatorClient.PutAsJsonAsync($"/manage/v1/devices/@{userId}/policy", new { spend_cap = 50 }).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(capped.IsSuccessStatusCode, await capped.Content.ReadAsStringAsync());
        }

        // Her first question, well below the cap: the answer, and no usage notice under it.
        await using var cli = await ClaudeTmuxSession.StartAsync(home);
        await cli.SendAsync("hello");
        await cli.WaitForAsync(SimulatorAnswer, ScreenWait);

        // She spends 41 of her 50 dollars (82 %): 8.2 million input tokens at Opus 4.7's 5 dollars a million, with the
        // access token Claude Code holds for her now.
        var token = home.Credentials()!.Value.GetProperty("jwt").GetString()!;
        using (var request = new HttpRequestMessage(HttpMethod.Post, new Uri(gateway.BaseUrl, "/v1/messages")))
        {
            request.Headers.Authorization = new("Bearer", token);
            request.Headers.Add("x-sim-input-tokens", "8200000");
            request.Content = JsonContent.Create(new { model = "claude-opus-4-7", max_tokens = 16, messages = new[] { new { role = "user", content = "a long document" } } });
            using var spent = await gateway.Client.SendAsync(request).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(spent.IsSuccessStatusCode, await spent.Content.ReadAsStringAsync());
        }
        await StackFixture.StoredAsync(gateway, MessagesReceived() - earlierMessages);
        Assert.Equal(41m, Math.Round(await fx.ScalarAsync<decimal>(database, "SELECT sum(cost_usd) FROM usage_events"), 2));

        // Claude Code shows one notice at a time, its start-up hint first: once that has gone, a notice from her first
        // answer would be on the screen.
        var belowCap = await cli.WaitForAsync(s => !s.Contains("/effort", StringComparison.Ordinal), "end of the start-up hint (/effort)", ScreenWait);
        log.WriteLine(ClaudeTmuxSession.Trimmed(belowCap));
        Assert.DoesNotContain(UsageWarning, belowCap);

        await cli.SendAsync("hello again");
        string pastCap;
        try
        {
            pastCap = await cli.WaitForAsync(UsageWarning, ScreenWait);
        }
        catch (TimeoutException e)
        {
            throw new Xunit.Sdk.XunitException(
                "Claude Code showed no usage warning at 82 % of her spend cap: the gateway's answers to /v1/messages must carry "
                + "anthropic-ratelimit-unified-status: allowed_warning, -representative-claim: overage, -overage-status, "
                + "-overage-utilization, -overage-surpassed-threshold: 0.75 and the reset headers.\n" + e.Message);
        }
        log.WriteLine(ClaudeTmuxSession.Trimmed(pastCap));
        var line = UsageWarningLine().Match(pastCap);
        Assert.True(line.Success, pastCap);
        // 41 of 50 dollars, counted before the reservation of the question being answered.
        Assert.Equal(82, int.Parse(line.Groups[1].Value, CultureInfo.InvariantCulture));
    }
}
