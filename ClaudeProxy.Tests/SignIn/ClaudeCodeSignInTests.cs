using System.Text.Json;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.SignIn;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Xunit.Abstractions;

namespace ClaudeProxy.Tests.SignIn;

/// <summary>
/// Claude Code's own CLI signs in through the gateway (<c>claude auth login --gateway-json</c>) while Chromium does the
/// browser's part at the development OpenID Connect provider, then works, refreshes, is cut off when the person is
/// deactivated, and signs out. The same flow over plain HTTP is in <see cref="SignInFlowTests"/>.
/// </summary>
public sealed partial class ClaudeCodeSignInTests(StackFixture fx, ITestOutputHelper log) : IClassFixture<StackFixture>, IAsyncLifetime
{
    /// <summary>One CLI run on a loaded two-core machine: the native binary starts in seconds, not milliseconds.</summary>
    private static readonly TimeSpan CliRun = TimeSpan.FromSeconds(90);
    private const string SimulatorAnswer = "Hello from the Anthropic simulator.";
    private DevIdentityHost _idp = null!;

    public async Task InitializeAsync()
    {
        _idp = await DevIdentityHost.StartAsync();
        // The gateway gives the provider ten seconds to serve its discovery document and keys; the provider's first
        // answers, on a loaded machine, can take longer than that, so they are asked for once before the test starts.
        using var discovery = JsonDocument.Parse(await _idp.Client.GetStringAsync(".well-known/openid-configuration").WaitAsync(TimeSpan.FromSeconds(60)));
        await _idp.Client.GetStringAsync(discovery.RootElement.GetProperty("jwks_uri").GetString()).WaitAsync(TimeSpan.FromSeconds(60));
    }

    public async Task DisposeAsync() => await _idp.DisposeAsync();

    /// <summary>A gateway whose sign-in goes to the development provider, with access tokens short enough that every CLI run refreshes.</summary>
    private async Task<(GatewayHost Gateway, string Database)> StartAsync()
    {
        var database = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(database, s =>
        {
            s["OIDC_AUTHORITY"] = _idp.Authority.ToString();
            s["OIDC_CLIENT_ID"] = _idp.ClientId;
            s["OIDC_CLIENT_SECRET"] = _idp.ClientSecret;
            s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
            // Claude Code refreshes whenever its token ends within five minutes: with two, every run refreshes first.
            s["USER_TOKEN_LIFETIME_SECONDS"] = "120";
        });
        return (gateway, database);
    }

    /// <summary>
    /// <c>claude auth login --gateway-json</c> from start to <c>done</c>: each question answered as a person would, and
    /// the link it prints opened in Chromium, where <paramref name="user"/> signs in at the provider.
    /// </summary>
    private async Task SignInAsync(ClaudeHome home, GatewayHost gateway, TestUser user, string? screenshots = null)
    {
        await using var login = home.Start("auth", "login", "--gateway-json");
        var asked = new List<string>();
        var approved = false;
        while (true)
        {
            var line = await login.NextJsonAsync(CliRun);
            var state = line.GetProperty("state").GetString()!;
            switch (state)
            {
                case "url_input" or "trust_prompt" or "confirm_account":
                    var shown = line.GetProperty("shown").GetString()!;
                    if (state == "trust_prompt")
                    {
                        Assert.Equal("http-loopback", shown);
                    }
                    if (state == "confirm_account")
                    {
                        Assert.Equal(user.Email, shown);
                    }
                    asked.Add(state);
                    await login.WriteLineAsync(JsonSerializer.Serialize(new { state, shown, accept = true }));
                    continue;
                case "polling" when !approved:
                    approved = true;
                    var browserUrl = new Uri(line.GetProperty("browserUrl").GetString()!);
                    Assert.Equal(gateway.BaseUrl.GetLeftPart(UriPartial.Authority), browserUrl.GetLeftPart(UriPartial.Authority));
                    Assert.Equal(new Uri(gateway.BaseUrl, "/device"), new Uri(line.GetProperty("verificationUri").GetString()!));
                    await ApproveInBrowserAsync(gateway, browserUrl, line.GetProperty("userCode").GetString()!, user, screenshots);
                    continue;
                case "done":
                    break;
                case "error":
                    Assert.Fail($"claude auth login failed: {line}\n{login.Output}");
                    break;
                default:
                    continue;
            }
            break;
        }
        Assert.Contains("confirm_account", asked);
        var exit = await login.ExitAsync(CliRun);
        Assert.True(exit == 0, login.Output);
    }

    private async Task ApproveInBrowserAsync(GatewayHost gateway, Uri browserUrl, string userCode, TestUser user, string? screenshots)
    {
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await AdminBrowser.LaunchAsync(playwright);
        var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 900, Height = 640 } });
        page.SetDefaultTimeout(60_000);
        await page.GotoAsync(browserUrl.ToString());
        // The page shows the code Claude Code printed, so the person can check they are approving their own terminal.
        Assert.Equal(userCode, await page.InputValueAsync("#user_code"));
        if (screenshots is not null)
        {
            await AdminBrowser.ShotAsync(page, screenshots + "-verification");
        }
        try
        {
            await page.ClickAsync("button:has-text('Continue')");
            await page.FillAsync("input[name=username]", user.Email);
            await page.FillAsync("input[name=password]", DevIdentityHost.Password);
            await page.ClickAsync("button:has-text('Sign in')");
            await page.GetByText("You are signed in").WaitForAsync();
        }
        catch (TimeoutException e)
        {
            var problems = gateway.Logs.Lines.Concat(_idp.Logs.Lines).Where(l => l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal));
            throw new InvalidOperationException($"the browser is stuck at {page.Url}:\n{await page.ContentAsync()}\n{string.Join('\n', problems)}", e);
        }
        Assert.Contains(user.Email, await page.ContentAsync());
        if (screenshots is not null)
        {
            await AdminBrowser.ShotAsync(page, screenshots + "-signed-in");
        }
    }

    private int MessagesReceived() =>
        fx.Simulator.State.Requests.Count(r => r.PathAndQuery.StartsWith("/v1/messages", StringComparison.Ordinal) && !r.PathAndQuery.StartsWith("/v1/messages/", StringComparison.Ordinal));

    [Fact]
    public async Task Claude_Code_signs_in_through_the_provider_works_as_the_person_refreshes_and_signs_out()
    {
        var (gateway, database) = await StartAsync();
        using var home = ClaudeHome.ForGateway(gateway.BaseUrl);

        await SignInAsync(home, gateway, DevIdentityHost.Alice, screenshots: "sign-in");
        var signedIn = home.Credentials() ?? throw new InvalidOperationException("no credentials file after sign-in");
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(home.CredentialsPath));
        }
        Assert.Equal(DevIdentityHost.Alice.Email, signedIn.GetProperty("email").GetString());
        var firstRefresh = signedIn.GetProperty("idpRefreshToken").GetString()!;
        var userId = await fx.ScalarAsync<string>(database, "SELECT user_id FROM users WHERE email = @e", ("e", DevIdentityHost.Alice.Email));
        var identity = (await gateway.Services.GetRequiredService<TokenService>().ValidateAsync(signedIn.GetProperty("jwt").GetString()!)).Identity!;
        Assert.Equal(userId, identity.UserId);

        // Her first question goes through the gateway under her name, after a refresh of the short-lived token.
        var (exit, output) = await home.RunAsync(CliRun, "-p", "hello");
        Assert.True(exit == 0, output);
        Assert.Equal(SimulatorAnswer, output.Trim());
        await StackFixture.StoredAsync(gateway, 1);
        Assert.Equal(userId, await fx.ScalarAsync<string>(database, "SELECT user_id FROM usage_events"));
        Assert.Equal(DevIdentityHost.Alice.Email, await fx.ScalarAsync<string>(database, "SELECT user_email FROM usage_events"));

        var family = await fx.ScalarAsync<Guid>(database, "SELECT family_id FROM refresh_tokens WHERE user_id = @u LIMIT 1", ("u", userId));
        Assert.Equal(1L, await fx.ScalarAsync<long>(database, "SELECT count(DISTINCT family_id) FROM refresh_tokens WHERE user_id = @u", ("u", userId)));
        Assert.True(await fx.ScalarAsync<long>(database, "SELECT count(*) FROM refresh_tokens WHERE family_id = @f AND used_at IS NOT NULL", ("f", family)) >= 1);
        // The CLI holds the one live token of the family, newer than every used one: it rotated, it did not reuse.
        var refreshed = home.Credentials()!.Value.GetProperty("idpRefreshToken").GetString()!;
        Assert.NotEqual(firstRefresh, refreshed);
        Assert.Equal(1L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM refresh_tokens WHERE family_id = @f AND used_at IS NULL AND revoked_at IS NULL", ("f", family)));
        Assert.Equal(SignInCodes.Hash(refreshed), await fx.ScalarAsync<string>(database,
            "SELECT token_hash FROM refresh_tokens WHERE family_id = @f AND used_at IS NULL AND revoked_at IS NULL", ("f", family)));
        Assert.True(await fx.ScalarAsync<bool>(database,
            "SELECT max(created_at) FILTER (WHERE used_at IS NULL) > max(created_at) FILTER (WHERE used_at IS NOT NULL) FROM refresh_tokens WHERE family_id = @f", ("f", family)));

        // Signing out revokes the whole sign-in at the gateway and forgets the tokens.
        (exit, output) = await home.RunAsync(CliRun, "auth", "logout");
        Assert.True(exit == 0, output);
        Assert.False(File.Exists(home.CredentialsPath), output);
        Assert.Equal(0L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM refresh_tokens WHERE family_id = @f AND revoked_at IS NULL", ("f", family)));
    }

    [Fact]
    public async Task When_the_person_is_deactivated_Claude_Code_is_refused_and_sent_back_to_sign_in()
    {
        var (gateway, database) = await StartAsync();
        using var home = ClaudeHome.ForGateway(gateway.BaseUrl);
        await SignInAsync(home, gateway, DevIdentityHost.Alice);
        var (exit, output) = await home.RunAsync(CliRun, "-p", "hello");
        Assert.True(exit == 0, output);
        Assert.Equal(SimulatorAnswer, output.Trim());
        await StackFixture.StoredAsync(gateway, 1);

        // An operator deactivates her, as the admin app's Users page does.
        var userId = await fx.ScalarAsync<string>(database, "SELECT user_id FROM users WHERE email = @e", ("e", DevIdentityHost.Alice.Email));
        using (var operatorClient = new HttpClient { BaseAddress = gateway.ManagementUrl })
        {
            operatorClient.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
            using var deactivated = await operatorClient.PostAsync($"/manage/v1/users/{userId}/deactivate", null).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(deactivated.IsSuccessStatusCode, await deactivated.Content.ReadAsStringAsync());
        }

        // Her refresh is refused, the access token she still holds is refused too, and nothing reaches Anthropic.
        var messages = MessagesReceived();
        (exit, output) = await home.RunAsync(CliRun, "-p", "hello again");
        log.WriteLine(output);
        Assert.True(exit != 0, output);
        Assert.DoesNotContain(SimulatorAnswer, output);
        // "Cloud gateway http://127.0.0.1:PORT no longer accepts this session. Start `claude` and sign in again with /login."
        Assert.Contains($"{gateway.BaseUrl.GetLeftPart(UriPartial.Authority)} no longer accepts this session", output);
        Assert.Contains("sign in again with /login", output);
        Assert.Equal(messages, MessagesReceived());
        Assert.Equal(1L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM usage_events"));
    }
}
