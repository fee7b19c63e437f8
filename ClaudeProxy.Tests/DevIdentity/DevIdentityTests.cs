using System.Net;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ClaudeProxy.Tests.DevIdentity;

/// <summary>
/// The development OpenID Connect provider as any standard client sees it: discovery, the authorization code flow
/// with PKCE through its sign-in form, ID tokens and userinfo with the person's groups, refresh, and a user it refuses.
/// </summary>
public sealed class DevIdentityTests : IAsyncLifetime
{
    private const string Callback = "http://127.0.0.1:4321/oauth/callback";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private DevIdentityHost _idp = null!;

    public async Task InitializeAsync() => _idp = await DevIdentityHost.StartAsync();

    public async Task DisposeAsync() => await _idp.DisposeAsync();

    [Fact]
    public async Task Discovery_lists_the_endpoints_the_code_flow_needs_and_S256_alone()
    {
        var discovery = await JsonAsync(_idp.Client.GetAsync(".well-known/openid-configuration"));
        Assert.Equal(_idp.Authority.ToString(), discovery.GetProperty("issuer").GetString());
        foreach (var (name, path) in new[] { ("authorization_endpoint", "connect/authorize"), ("token_endpoint", "connect/token"),
            ("userinfo_endpoint", "connect/userinfo"), ("end_session_endpoint", "connect/logout"), ("jwks_uri", ".well-known/jwks") })
        {
            Assert.Equal(new Uri(_idp.Authority, path).ToString(), discovery.GetProperty(name).GetString());
        }
        Assert.Equal(["S256"], Strings(discovery.GetProperty("code_challenge_methods_supported")));
        Assert.Contains("code", Strings(discovery.GetProperty("response_types_supported")));
        Assert.Contains("query", Strings(discovery.GetProperty("response_modes_supported")));
        Assert.Superset(new HashSet<string> { "authorization_code", "refresh_token" }, Strings(discovery.GetProperty("grant_types_supported")).ToHashSet());
        Assert.Superset(new HashSet<string> { "openid", "email", "profile", "offline_access" }, Strings(discovery.GetProperty("scopes_supported")).ToHashSet());

        var jwks = await JsonAsync(_idp.Client.GetAsync(discovery.GetProperty("jwks_uri").GetString()));
        Assert.Contains(jwks.GetProperty("keys").EnumerateArray(), k => k.GetProperty("kty").GetString() == "RSA" && k.GetProperty("use").GetString() == "sig");
    }

    [Fact]
    public async Task The_code_flow_with_PKCE_through_the_sign_in_form_gives_an_ID_token_and_userinfo_with_email_name_and_groups()
    {
        using var browser = DevIdentityHost.NewBrowser();
        var pkce = Pkce.Create();
        var (state, nonce) = (Guid.NewGuid().ToString("N"), Guid.NewGuid().ToString("N"));

        // Not signed in yet: the provider shows its sign-in form, with the banner.
        using (var first = await browser.GetAsync(_idp.AuthorizationUrl(Callback, pkce, state, nonce)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.Redirect, first.StatusCode);
            var form = await browser.GetStringAsync(new Uri(_idp.Authority, first.Headers.Location!)).WaitAsync(Timeout);
            Assert.Contains("NOT FOR PRODUCTION", form);
            Assert.Contains("name=\"password\"", form);
            Assert.NotEmpty(DevIdentityHost.AntiforgeryToken(form));
        }

        var callback = await _idp.SignInAsync(browser, _idp.AuthorizationUrl(Callback, pkce, state, nonce), DevIdentityHost.Bob.Email).WaitAsync(Timeout);
        Assert.Equal(Callback, callback.GetLeftPart(UriPartial.Path));
        var query = QueryHelpers.ParseQuery(callback.Query);
        Assert.Equal(state, query["state"]);
        var tokens = await RedeemAsync(query["code"].ToString(), pkce);
        Assert.Equal("Bearer", tokens.GetProperty("token_type").GetString());

        var id = await ValidIdTokenAsync(tokens.GetProperty("id_token").GetString()!);
        Assert.Equal(nonce, id.GetClaim("nonce").Value);
        AssertPerson(DevIdentityHost.Bob, id);

        // Userinfo, with the access token, says the same.
        using var request = new HttpRequestMessage(HttpMethod.Get, "connect/userinfo");
        request.Headers.Authorization = new("Bearer", tokens.GetProperty("access_token").GetString());
        var userinfo = await JsonAsync(_idp.Client.SendAsync(request));
        Assert.Equal("dev-bob", userinfo.GetProperty("sub").GetString());
        Assert.Equal("bob@example.com", userinfo.GetProperty("email").GetString());
        Assert.True(userinfo.GetProperty("email_verified").GetBoolean());
        Assert.Equal("Bob Operator", userinfo.GetProperty("name").GetString());
        Assert.Equal(["engineering", "claudeproxy-admins"], Strings(userinfo.GetProperty("groups")));

        // Signed in already: the next authorization goes straight back with a fresh code.
        var again = await _idp.SignInAsync(browser, _idp.AuthorizationUrl(Callback, pkce, "s2", "n2"), DevIdentityHost.Bob.Email).WaitAsync(Timeout);
        Assert.Equal("s2", QueryHelpers.ParseQuery(again.Query)["state"]);
        Assert.NotEqual(query["code"], QueryHelpers.ParseQuery(again.Query)["code"]);
    }

    [Fact]
    public async Task One_group_is_still_a_JSON_array_and_each_user_keeps_their_subject()
    {
        foreach (var user in new[] { DevIdentityHost.Alice, DevIdentityHost.Carol })
        {
            using var browser = DevIdentityHost.NewBrowser();
            var pkce = Pkce.Create();
            var callback = await _idp.SignInAsync(browser, _idp.AuthorizationUrl(Callback, pkce, "s", "n"), user.Email).WaitAsync(Timeout);
            var tokens = await RedeemAsync(QueryHelpers.ParseQuery(callback.Query)["code"].ToString(), pkce);
            AssertPerson(user, await ValidIdTokenAsync(tokens.GetProperty("id_token").GetString()!));
        }
    }

    [Fact]
    public async Task A_wrong_password_or_unknown_user_is_refused_and_signs_nobody_in()
    {
        using var browser = DevIdentityHost.NewBrowser();
        var authorize = _idp.AuthorizationUrl(Callback, Pkce.Create(), "s", "n");
        foreach (var (user, password) in new[] { ("alice@example.com", "wrong"), ("alice@example.com", ""), ("mallory@example.com", DevIdentityHost.Password), ("", "") })
        {
            var form = await browser.GetStringAsync(new Uri(_idp.Authority, "account/login")).WaitAsync(Timeout);
            using var post = await browser.PostAsync(new Uri(_idp.Authority, "account/login"), new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["username"] = user, ["password"] = password, ["returnUrl"] = authorize.PathAndQuery, ["__RequestVerificationToken"] = DevIdentityHost.AntiforgeryToken(form),
            })).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.Unauthorized, post.StatusCode);
            var page = await post.Content.ReadAsStringAsync();
            Assert.Contains("Unknown user or wrong password.", page);
            Assert.Contains("NOT FOR PRODUCTION", page);
        }
        // Still nobody signed in: the authorization request goes back to the form, not to the client.
        using var response = await browser.GetAsync(authorize).WaitAsync(Timeout);
        Assert.Equal("/account/login", new Uri(_idp.Authority, response.Headers.Location!).AbsolutePath);

        // Without the antiforgery token the form is not even read.
        using var forged = await browser.PostAsync(new Uri(_idp.Authority, "account/login"), new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["username"] = "alice@example.com", ["password"] = DevIdentityHost.Password,
        })).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
    }

    [Fact]
    public async Task A_sign_in_never_redirects_off_the_provider()
    {
        using var browser = DevIdentityHost.NewBrowser();
        foreach (var target in new[] { "https://evil.example.com/", "//evil.example.com/", "/\\evil.example.com" })
        {
            var form = await browser.GetStringAsync(new Uri(_idp.Authority, "account/login")).WaitAsync(Timeout);
            using var post = await browser.PostAsync(new Uri(_idp.Authority, "account/login"), new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["username"] = "alice", ["password"] = DevIdentityHost.Password, ["returnUrl"] = target, ["__RequestVerificationToken"] = DevIdentityHost.AntiforgeryToken(form),
            })).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.Redirect, post.StatusCode);
            Assert.Equal("/", post.Headers.Location?.ToString());
        }
    }

    [Fact]
    public async Task A_redirect_uri_neither_registered_nor_on_loopback_is_refused_without_redirecting_to_it()
    {
        using var browser = DevIdentityHost.NewBrowser();
        foreach (var redirect in new[] { "https://evil.example.com/oauth/callback", "http://127.0.0.1.evil.example.com/oauth/callback", "http://localhost.evil.example.com/cb" })
        {
            using var response = await browser.GetAsync(_idp.AuthorizationUrl(redirect, Pkce.Create(), "s", "n")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Null(response.Headers.Location);
            var page = await response.Content.ReadAsStringAsync();
            Assert.Contains("invalid_request", page);
            Assert.Contains("NOT FOR PRODUCTION", page);
        }
        // Any loopback port and path is accepted for this client: on to the sign-in form.
        foreach (var redirect in new[] { "http://localhost:1/signin-oidc", "http://[::1]:65000/oauth/callback", Callback })
        {
            using var response = await browser.GetAsync(_idp.AuthorizationUrl(redirect, Pkce.Create(), "s", "n")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
            Assert.Equal("/account/login", new Uri(_idp.Authority, response.Headers.Location!).AbsolutePath);
        }
    }

    [Fact]
    public async Task Without_the_loopback_setting_only_registered_redirect_uris_are_accepted()
    {
        const string registered = "http://127.0.0.1:3001/oauth/callback";
        await using var idp = await DevIdentityHost.StartAsync([registered], allowLoopbackRedirectUris: false);
        using var browser = DevIdentityHost.NewBrowser();
        using (var other = await browser.GetAsync(idp.AuthorizationUrl("http://127.0.0.1:3002/oauth/callback", Pkce.Create(), "s", "n")).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.BadRequest, other.StatusCode);
        }
        var pkce = Pkce.Create();
        var callback = await idp.SignInAsync(browser, idp.AuthorizationUrl(registered, pkce, "s", "n"), DevIdentityHost.Alice.Email).WaitAsync(Timeout);
        Assert.Equal(registered, callback.GetLeftPart(UriPartial.Path));
    }

    [Fact]
    public async Task Without_PKCE_S256_the_request_is_refused_and_a_wrong_verifier_redeems_nothing()
    {
        using var browser = DevIdentityHost.NewBrowser();
        var pkce = Pkce.Create();
        var withPkce = _idp.AuthorizationUrl(Callback, pkce, "s", "n").ToString();
        foreach (var url in new[]
        {
            QueryHelpers.AddQueryString(withPkce.Split('?')[0], Query(withPkce, without: ["code_challenge", "code_challenge_method"])),
            QueryHelpers.AddQueryString(withPkce.Split('?')[0], Query(withPkce, without: ["code_challenge_method"])),
            withPkce.Replace("code_challenge_method=S256", "code_challenge_method=plain", StringComparison.Ordinal),
        })
        {
            // Refused before anything else is looked at: no sign-in form, no redirect, no code.
            using var response = await browser.GetAsync(url).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Null(response.Headers.Location);
            var page = await response.Content.ReadAsStringAsync();
            Assert.Contains("invalid_request", page);
            Assert.Contains("code_challenge", page);
        }

        var callback = await _idp.SignInAsync(browser, new Uri(withPkce), DevIdentityHost.Alice.Email).WaitAsync(Timeout);
        var code = QueryHelpers.ParseQuery(callback.Query)["code"].ToString();
        var wrong = await TokenAsync(new() { ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = Callback, ["code_verifier"] = Pkce.Create().Verifier });
        Assert.Equal("invalid_grant", wrong.GetProperty("error").GetString());
        var missing = await TokenAsync(new() { ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = Callback });
        Assert.Equal("invalid_request", missing.GetProperty("error").GetString());
    }

    [Fact]
    public async Task A_code_is_redeemed_once_and_only_by_the_client_with_its_secret()
    {
        using var browser = DevIdentityHost.NewBrowser();
        var pkce = Pkce.Create();
        var callback = await _idp.SignInAsync(browser, _idp.AuthorizationUrl(Callback, pkce, "s", "n"), DevIdentityHost.Alice.Email).WaitAsync(Timeout);
        var code = QueryHelpers.ParseQuery(callback.Query)["code"].ToString();
        var badSecret = await TokenAsync(new() { ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = Callback, ["code_verifier"] = pkce.Verifier }, secret: "not-the-secret");
        Assert.Equal("invalid_client", badSecret.GetProperty("error").GetString());
        await RedeemAsync(code, pkce);
        var replay = await TokenAsync(new() { ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = Callback, ["code_verifier"] = pkce.Verifier });
        Assert.Equal("invalid_grant", replay.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Refresh_works_and_is_refused_with_invalid_grant_while_the_user_is_disabled()
    {
        using var browser = DevIdentityHost.NewBrowser();
        var pkce = Pkce.Create();
        var callback = await _idp.SignInAsync(browser, _idp.AuthorizationUrl(Callback, pkce, "s", "n"), DevIdentityHost.Carol.Email).WaitAsync(Timeout);
        var tokens = await RedeemAsync(QueryHelpers.ParseQuery(callback.Query)["code"].ToString(), pkce);
        var refreshToken = tokens.GetProperty("refresh_token").GetString()!;

        var refreshed = await TokenAsync(new() { ["grant_type"] = "refresh_token", ["refresh_token"] = refreshToken });
        Assert.True(refreshed.TryGetProperty("access_token", out _), refreshed.ToString());
        AssertPerson(DevIdentityHost.Carol, await ValidIdTokenAsync(refreshed.GetProperty("id_token").GetString()!));
        refreshToken = refreshed.GetProperty("refresh_token").GetString()!;

        await _idp.DisableAsync("carol@example.com");
        var refused = await TokenAsync(new() { ["grant_type"] = "refresh_token", ["refresh_token"] = refreshToken });
        Assert.Equal("invalid_grant", refused.GetProperty("error").GetString());
        Assert.False(refused.TryGetProperty("access_token", out _));

        // Her session at the provider ends too: the next authorization asks her to sign in, and the form refuses her.
        using (var response = await browser.GetAsync(_idp.AuthorizationUrl(Callback, Pkce.Create(), "s", "n")).WaitAsync(Timeout))
        {
            Assert.Equal("/account/login", new Uri(_idp.Authority, response.Headers.Location!).AbsolutePath);
        }
        var form = await browser.GetStringAsync(new Uri(_idp.Authority, "account/login")).WaitAsync(Timeout);
        using (var post = await browser.PostAsync(new Uri(_idp.Authority, "account/login"), new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["username"] = "carol@example.com", ["password"] = DevIdentityHost.Password, ["returnUrl"] = "/", ["__RequestVerificationToken"] = DevIdentityHost.AntiforgeryToken(form),
        })).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
            Assert.Contains("This user is disabled.", await post.Content.ReadAsStringAsync());
        }
        using (var userinfo = new HttpRequestMessage(HttpMethod.Get, "connect/userinfo"))
        {
            userinfo.Headers.Authorization = new("Bearer", refreshed.GetProperty("access_token").GetString());
            using var response = await _idp.Client.SendAsync(userinfo).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        // Enabled again, the same refresh token works: the refusal consumed nothing.
        await _idp.EnableAsync("carol@example.com");
        var back = await TokenAsync(new() { ["grant_type"] = "refresh_token", ["refresh_token"] = refreshToken });
        Assert.True(back.TryGetProperty("access_token", out _), back.ToString());
    }

    [Fact]
    public async Task Without_offline_access_no_refresh_token_is_issued()
    {
        using var browser = DevIdentityHost.NewBrowser();
        var pkce = Pkce.Create();
        var callback = await _idp.SignInAsync(browser, _idp.AuthorizationUrl(Callback, pkce, "s", "n", scope: "openid profile email"), DevIdentityHost.Alice.Email).WaitAsync(Timeout);
        var tokens = await RedeemAsync(QueryHelpers.ParseQuery(callback.Query)["code"].ToString(), pkce);
        Assert.False(tokens.TryGetProperty("refresh_token", out _));
        Assert.True(tokens.TryGetProperty("id_token", out _));
    }

    [Fact]
    public async Task The_dev_api_names_unknown_users_and_the_home_page_carries_the_banner()
    {
        using var unknown = await _idp.Client.PostAsync("dev/users/mallory@example.com/disable", null).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        var users = await JsonAsync(_idp.Client.GetAsync("dev/users"));
        Assert.Equal(["alice@example.com", "bob@example.com", "carol@example.com"], users.EnumerateArray().Select(u => u.GetProperty("email").GetString()));
        var home = await _idp.Client.GetStringAsync("").WaitAsync(Timeout);
        Assert.Contains("NOT FOR PRODUCTION", home);
        Assert.Contains(_idp.Logs.Lines, l => l.StartsWith("Warning", StringComparison.Ordinal) && l.Contains("NOT FOR PRODUCTION", StringComparison.Ordinal));
        Assert.DoesNotContain(_idp.Logs.Lines, l => l.Contains(_idp.ClientSecret, StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_dev_api_answers_this_machine_only()
    {
        // As if every request came from another machine on the network.
        await using var idp = await DevIdentityHost.StartAsync(configure: b =>
            b.Services.AddSingleton<IStartupFilter>(new RemoteAddress(IPAddress.Parse("192.0.2.10"))));
        using var disable = await idp.Client.PostAsync("dev/users/alice@example.com/disable", null).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.Forbidden, disable.StatusCode);
        using var list = await idp.Client.GetAsync("dev/users").WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.Forbidden, list.StatusCode);
        // Alice was not disabled: she still signs in.
        using var browser = DevIdentityHost.NewBrowser();
        var callback = await idp.SignInAsync(browser, idp.AuthorizationUrl(Callback, Pkce.Create(), "s", "n"), DevIdentityHost.Alice.Email).WaitAsync(Timeout);
        Assert.False(string.IsNullOrEmpty(QueryHelpers.ParseQuery(callback.Query)["code"]));
    }

    private sealed class RemoteAddress(IPAddress address) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use((context, following) =>
            {
                context.Connection.RemoteIpAddress = address;
                return following(context);
            });
            next(app);
        };
    }

    private static void AssertPerson(TestUser user, JsonWebToken token)
    {
        Assert.Equal(user.Subject, token.Subject);
        Assert.Equal(user.Email, token.GetClaim("email").Value);
        Assert.Equal("true", token.GetClaim("email_verified").Value);
        Assert.Equal(user.Name, token.GetClaim("name").Value);
        using var payload = JsonDocument.Parse(Base64UrlEncoder.Decode(token.EncodedPayload));
        var groups = payload.RootElement.GetProperty("groups");
        Assert.Equal(JsonValueKind.Array, groups.ValueKind);
        Assert.Equal(user.Groups, Strings(groups));
    }

    /// <summary>An ID token whose signature, issuer, audience and lifetime check out against discovery's keys.</summary>
    private async Task<JsonWebToken> ValidIdTokenAsync(string idToken)
    {
        var jwks = new JsonWebKeySet(await _idp.Client.GetStringAsync(".well-known/jwks").WaitAsync(Timeout));
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(idToken, new TokenValidationParameters
        {
            ValidIssuer = _idp.Authority.ToString(), ValidAudience = _idp.ClientId, IssuerSigningKeys = jwks.GetSigningKeys(),
        }).WaitAsync(Timeout);
        Assert.True(result.IsValid, result.Exception?.Message);
        return (JsonWebToken)result.SecurityToken;
    }

    private async Task<JsonElement> RedeemAsync(string code, Pkce pkce)
    {
        var tokens = await TokenAsync(new() { ["grant_type"] = "authorization_code", ["code"] = code, ["redirect_uri"] = Callback, ["code_verifier"] = pkce.Verifier });
        Assert.True(tokens.TryGetProperty("id_token", out _), tokens.ToString());
        return tokens;
    }

    private async Task<JsonElement> TokenAsync(Dictionary<string, string> form, string? secret = null)
    {
        form["client_id"] = _idp.ClientId;
        form["client_secret"] = secret ?? _idp.ClientSecret;
        return await JsonAsync(_idp.Client.PostAsync("connect/token", new FormUrlEncodedContent(form)));
    }

    private static async Task<JsonElement> JsonAsync(Task<HttpResponseMessage> sending)
    {
        using var response = await sending.WaitAsync(Timeout);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private static List<string> Strings(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetString()!)];

    private static Dictionary<string, string?> Query(string url, string[] without) =>
        QueryHelpers.ParseQuery(new Uri(url).Query).Where(p => !without.Contains(p.Key)).ToDictionary(p => p.Key, p => (string?)p.Value.ToString());
}
