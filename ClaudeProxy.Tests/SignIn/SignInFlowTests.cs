using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.SignIn;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.SignIn;

/// <summary>
/// The whole sign-in over HTTP, as a browser and Claude Code would go through it, against a real OpenID Connect
/// provider (the development one: nothing in the gateway knows it is that one). The Claude Code CLI itself runs the
/// same flow in ClaudeCodeSignInTests.
/// </summary>
public sealed partial class SignInFlowTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private DevIdentityHost _idp = null!;

    public async Task InitializeAsync() => _idp = await DevIdentityHost.StartAsync();

    public async Task DisposeAsync() => await _idp.DisposeAsync();

    private async Task<(GatewayHost Gateway, string Database)> StartAsync(string? database = null, Action<Dictionary<string, string?>>? configure = null)
    {
        database ??= await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(database, s =>
        {
            s["OIDC_AUTHORITY"] = _idp.Authority.ToString();
            s["OIDC_CLIENT_ID"] = _idp.ClientId;
            s["OIDC_CLIENT_SECRET"] = _idp.ClientSecret;
            s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
            configure?.Invoke(s);
        });
        return (gateway, database);
    }

    private static FormUrlEncodedContent Form(params (string Name, string Value)[] fields) =>
        new(fields.Select(f => new KeyValuePair<string, string>(f.Name, f.Value)));

    private static async Task<JsonElement> AuthorizeAsync(GatewayHost gateway)
    {
        using var response = await gateway.Client.PostAsync("/oauth/device_authorization", Form(("surface", "claude_code")));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private static async Task<(int Status, JsonElement Body)> PollAsync(GatewayHost gateway, string deviceCode)
    {
        using var response = await gateway.Client.PostAsync("/oauth/token", Form(("grant_type", OAuthEndpoints.DeviceCodeGrant), ("device_code", deviceCode)));
        return ((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    /// <summary>
    /// The browser's part: open the link Claude Code shows, continue, sign in at the provider. Returns where the
    /// provider sends the browser back (the gateway's callback, with code and state), not yet followed.
    /// </summary>
    private async Task<Uri> ToProviderAndBackAsync(HttpClient browser, GatewayHost gateway, JsonElement authorization, TestUser user)
    {
        var link = new Uri(authorization.GetProperty("verification_uri_complete").GetString()!);
        var page = await browser.GetStringAsync(link);
        var csrf = CsrfField().Match(page).Groups[1].Value;
        var code = authorization.GetProperty("user_code").GetString()!;
        using var post = await browser.PostAsync(new Uri(gateway.BaseUrl, "/device"), Form(("user_code", code), ("csrf", csrf)));
        Assert.Equal(HttpStatusCode.Redirect, post.StatusCode);
        var toProvider = post.Headers.Location!;
        Assert.StartsWith(_idp.Authority.ToString(), toProvider.ToString());
        var query = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(toProvider.Query);
        Assert.Equal("S256", query["code_challenge_method"].ToString());
        Assert.Equal("code", query["response_type"].ToString());
        Assert.Equal(new Uri(gateway.BaseUrl, "/oauth/callback").ToString(), query["redirect_uri"].ToString());
        Assert.Contains("offline_access", query["scope"].ToString());
        return await _idp.SignInAsync(browser, toProvider, user.Email);
    }

    [Fact]
    public async Task A_person_signs_in_through_the_provider_and_works_with_the_token_the_poll_returns()
    {
        var (gateway, database) = await StartAsync();
        var authorization = await AuthorizeAsync(gateway);
        var deviceCode = authorization.GetProperty("device_code").GetString()!;
        Assert.Equal(400, (await PollAsync(gateway, deviceCode)).Status);

        using var browser = DevIdentityHost.NewBrowser();
        var callback = await ToProviderAndBackAsync(browser, gateway, authorization, DevIdentityHost.Alice);
        Assert.Equal("/oauth/callback", callback.AbsolutePath);
        using (var back = await browser.GetAsync(callback))
        {
            var html = await back.Content.ReadAsStringAsync();
            Assert.True(back.StatusCode == HttpStatusCode.OK, html);
            Assert.Contains("You are signed in", html);
            Assert.Contains("alice@example.com", html);
        }
        // The callback cannot be replayed, by this browser or any other.
        using (var again = await browser.GetAsync(callback))
        {
            Assert.Equal(HttpStatusCode.BadRequest, again.StatusCode);
        }

        var (status, tokens) = await PollAsync(gateway, deviceCode);
        Assert.True(status == 200, tokens.ToString());
        Assert.Equal("alice@example.com", tokens.GetProperty("email").GetString());

        // Who the provider said she is, kept: subject, name, groups from the configured claim.
        Assert.Equal("Alice Developer", await fx.ScalarAsync<string>(database, "SELECT name FROM users WHERE subject = @s", ("s", DevIdentityHost.Alice.Subject)));
        Assert.Equal(["engineering"], await fx.ScalarAsync<string[]>(database, "SELECT groups FROM users WHERE subject = @s", ("s", DevIdentityHost.Alice.Subject)));
        Assert.Equal(_idp.Authority.ToString().TrimEnd('/'), (await fx.ScalarAsync<string>(database, "SELECT issuer FROM users")).TrimEnd('/'));

        using var answer = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: tokens.GetProperty("access_token").GetString()));
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        await StackFixture.StoredAsync(gateway, 1);
        Assert.Equal("alice@example.com", await fx.ScalarAsync<string>(database, "SELECT user_email FROM usage_events"));
    }

    [Fact]
    public async Task The_browser_that_returns_must_be_the_one_that_left_and_a_forged_callback_changes_nothing()
    {
        var (gateway, database) = await StartAsync();
        var authorization = await AuthorizeAsync(gateway);
        using var browser = DevIdentityHost.NewBrowser();
        var callback = await ToProviderAndBackAsync(browser, gateway, authorization, DevIdentityHost.Alice);

        // The same callback, opened in another browser (a link sent to a victim): no correlation cookie, refused.
        using var victim = DevIdentityHost.NewBrowser();
        using (var refused = await victim.GetAsync(callback))
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains("Start again in Claude Code", await refused.Content.ReadAsStringAsync());
        }
        using (var forged = await victim.GetAsync(new Uri(gateway.BaseUrl, "/oauth/callback?code=abc&state=not-a-state")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
        }
        Assert.Equal("pending", await fx.ScalarAsync<string>(database, "SELECT status FROM device_authorizations"));
        Assert.Equal(0L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM users"));
    }

    [Fact]
    public async Task A_sign_in_started_on_one_instance_finishes_on_another()
    {
        var (first, database) = await StartAsync();
        var (second, _) = await StartAsync(database, s => s["MIGRATE_ON_START"] = "false");
        var authorization = await AuthorizeAsync(first);
        using var browser = DevIdentityHost.NewBrowser();
        var callback = await ToProviderAndBackAsync(browser, first, authorization, DevIdentityHost.Bob);
        // The load balancer sends the browser's return to the other instance (cookies do not depend on the port).
        var elsewhere = new UriBuilder(callback) { Port = second.BaseUrl.Port }.Uri;
        using (var back = await browser.GetAsync(elsewhere))
        {
            Assert.True(back.StatusCode == HttpStatusCode.OK, await back.Content.ReadAsStringAsync());
        }
        var (status, tokens) = await PollAsync(first, authorization.GetProperty("device_code").GetString()!);
        Assert.True(status == 200, tokens.ToString());
        Assert.Equal("bob@example.com", tokens.GetProperty("email").GetString());
    }

    [Fact]
    public async Task When_the_provider_no_longer_signs_the_person_in_their_next_refresh_ends_the_session()
    {
        var (gateway, database) = await StartAsync();
        var authorization = await AuthorizeAsync(gateway);
        using var browser = DevIdentityHost.NewBrowser();
        using (var back = await browser.GetAsync(await ToProviderAndBackAsync(browser, gateway, authorization, DevIdentityHost.Carol)))
        {
            Assert.Equal(HttpStatusCode.OK, back.StatusCode);
        }
        var (_, tokens) = await PollAsync(gateway, authorization.GetProperty("device_code").GetString()!);
        // The provider's own refresh token is kept, encrypted.
        var kept = await fx.ScalarAsync<string>(database, "SELECT idp_refresh_token FROM refresh_tokens");
        Assert.False(string.IsNullOrEmpty(kept));

        // While the provider still knows her, a refresh asks it and goes through.
        using (var renewed = await gateway.Client.PostAsync("/oauth/token", Form(("grant_type", "refresh_token"), ("refresh_token", tokens.GetProperty("refresh_token").GetString()!))))
        {
            Assert.Equal(HttpStatusCode.OK, renewed.StatusCode);
            tokens = JsonDocument.Parse(await renewed.Content.ReadAsStringAsync()).RootElement.Clone();
        }
        await _idp.DisableAsync(DevIdentityHost.Carol.Email);
        try
        {
            using var refused = await gateway.Client.PostAsync("/oauth/token", Form(("grant_type", "refresh_token"), ("refresh_token", tokens.GetProperty("refresh_token").GetString()!)));
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal("invalid_grant", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString());
            Assert.Equal(0L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND used_at IS NULL"));
        }
        finally
        {
            await _idp.EnableAsync(DevIdentityHost.Carol.Email);
        }
    }

    [GeneratedRegex("name=\"csrf\" value=\"([^\"]+)\"")]
    private static partial Regex CsrfField();
}
