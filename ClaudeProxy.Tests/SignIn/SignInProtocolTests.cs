using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.SignIn;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.SignIn;

/// <summary>
/// The gateway's side of Claude Code's sign-in protocol over plain HTTP: discovery, device authorization, every
/// answer of the token endpoint, refresh rotation, revocation, and the signed-in person's token on the request path.
/// The browser leg with a real identity provider is in <see cref="SignInFlowTests"/>; here the approval is what the
/// callback records (<see cref="SignInStore.ApproveAsync"/>).
/// </summary>
public sealed partial class SignInProtocolTests(StackFixture fx) : IClassFixture<StackFixture>
{
    /// <summary>Never contacted by these tests: the provider is only asked in the browser leg.</summary>
    private const string UnusedAuthority = "http://127.0.0.1:9/";

    private async Task<(GatewayHost Gateway, string Database)> StartAsync(Action<Dictionary<string, string?>>? configure = null)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s =>
        {
            s["OIDC_AUTHORITY"] = UnusedAuthority;
            s["OIDC_CLIENT_ID"] = "claudeproxy-test";
            s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
            configure?.Invoke(s);
        });
        return (gateway, db);
    }

    private static FormUrlEncodedContent Form(params (string Name, string Value)[] fields) =>
        new(fields.Select(f => new KeyValuePair<string, string>(f.Name, f.Value)));

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response, int status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("no-store", response.Headers.CacheControl?.ToString());
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<string> OAuthErrorAsync(HttpResponseMessage response, int status = 400)
    {
        var json = await JsonAsync(response, status);
        Assert.False(string.IsNullOrEmpty(json.GetProperty("error_description").GetString()));
        return json.GetProperty("error").GetString()!;
    }

    private static async Task<JsonElement> AuthorizeAsync(GatewayHost gateway)
    {
        using var response = await gateway.Client.PostAsync("/oauth/device_authorization", Form(("surface", "claude_code")));
        return await JsonAsync(response, 200);
    }

    private static Task<HttpResponseMessage> PollAsync(GatewayHost gateway, string deviceCode) =>
        gateway.Client.PostAsync("/oauth/token", Form(("grant_type", OAuthEndpoints.DeviceCodeGrant), ("device_code", deviceCode)));

    private static Task<HttpResponseMessage> RefreshAsync(GatewayHost gateway, string refreshToken) =>
        gateway.Client.PostAsync("/oauth/token", Form(("grant_type", "refresh_token"), ("refresh_token", refreshToken)));

    private static SignedInPerson Person(string name = "alice") =>
        new("https://idp.example.com", "sub-" + name + "-" + Guid.NewGuid().ToString("N")[..8], $"{name}@example.com", name, ["engineering"]);

    /// <summary>A finished sign-in: the code approved for <paramref name="person"/> and the tokens the poll returns.</summary>
    private static async Task<JsonElement> SignInAsync(GatewayHost gateway, SignedInPerson person)
    {
        var authorization = await AuthorizeAsync(gateway);
        var code = SignInCodes.NormalizeUserCode(authorization.GetProperty("user_code").GetString())!;
        var (_, approved) = await gateway.Services.GetRequiredService<SignInStore>().ApproveAsync(code, person, null, CancellationToken.None);
        Assert.True(approved);
        using var response = await PollAsync(gateway, authorization.GetProperty("device_code").GetString()!);
        return await JsonAsync(response, 200);
    }

    private static GatewayDbContext Db(GatewayHost gateway) =>
        gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContext();

    [Fact]
    public async Task Discovery_names_same_origin_endpoints_and_the_protocol_version_without_credentials()
    {
        var (gateway, _) = await StartAsync();
        using var response = await gateway.Client.GetAsync("/.well-known/oauth-authorization-server");
        var json = await JsonAsync(response, 200);
        var origin = gateway.BaseUrl.GetLeftPart(UriPartial.Authority);
        Assert.Equal(origin, json.GetProperty("issuer").GetString());
        Assert.Equal(origin + "/oauth/device_authorization", json.GetProperty("device_authorization_endpoint").GetString());
        Assert.Equal(origin + "/oauth/token", json.GetProperty("token_endpoint").GetString());
        Assert.Equal(origin + "/oauth/revoke", json.GetProperty("revocation_endpoint").GetString());
        Assert.Equal([OAuthEndpoints.DeviceCodeGrant, "refresh_token"], json.GetProperty("grant_types_supported").EnumerateArray().Select(e => e.GetString()));
        Assert.Empty(json.GetProperty("response_types_supported").EnumerateArray());
        Assert.Equal(["none"], json.GetProperty("token_endpoint_auth_methods_supported").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(1, json.GetProperty("gateway_protocol_version").GetInt32());

        // Behind an ingress the public address is the one configured, not the one the request arrived on.
        var (behind, _) = await StartAsync(s => s["PROXY_BASE_URL"] = "https://gw.example.com/");
        using var published = await behind.Client.GetAsync("/.well-known/oauth-authorization-server");
        Assert.Equal("https://gw.example.com/oauth/token", (await JsonAsync(published, 200)).GetProperty("token_endpoint").GetString());
    }

    [Fact]
    public async Task Without_an_identity_provider_the_sign_in_is_not_served()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        using var discovery = await gateway.Client.GetAsync("/.well-known/oauth-authorization-server");
        await Http.AssertErrorAsync(discovery, 404, "not_found_error");
        using var authorize = await gateway.Client.PostAsync("/oauth/device_authorization", Form(("surface", "claude_code")));
        await Http.AssertErrorAsync(authorize, 404, "not_found_error");
    }

    [Fact]
    public async Task A_device_authorization_gives_an_easy_code_a_secret_device_code_and_a_prefilled_link()
    {
        var (gateway, _) = await StartAsync();
        // Unknown parameters (and no client_id) are fine.
        using var response = await gateway.Client.PostAsync("/oauth/device_authorization", Form(("surface", "claude_code"), ("whatever", "x")));
        var json = await JsonAsync(response, 200);
        var userCode = json.GetProperty("user_code").GetString()!;
        Assert.Matches("^[BCDFGHJKMNPQRSTVWXYZ]{4}-[BCDFGHJKMNPQRSTVWXYZ]{4}$", userCode);
        Assert.True(json.GetProperty("device_code").GetString()!.Length >= 43);
        var origin = gateway.BaseUrl.GetLeftPart(UriPartial.Authority);
        Assert.Equal(origin + "/device", json.GetProperty("verification_uri").GetString());
        Assert.Equal(origin + "/device?user_code=" + userCode, json.GetProperty("verification_uri_complete").GetString());
        Assert.Equal(600, json.GetProperty("expires_in").GetInt32());
        Assert.Equal(5, json.GetProperty("interval").GetInt32());
        Assert.InRange(json.GetProperty("login_notice").GetString()!.Length, 1, 500);

        // Only the hash of the device code is kept.
        await using var db = Db(gateway);
        var stored = await db.DeviceAuthorizations.SingleAsync();
        Assert.Equal(SignInCodes.Hash(json.GetProperty("device_code").GetString()!), stored.DeviceCodeHash);
        Assert.Equal(userCode.Replace("-", ""), stored.UserCode);
    }

    [Fact]
    public async Task Device_authorization_refuses_what_is_not_a_small_form_and_limits_each_address()
    {
        var (gateway, database) = await StartAsync(s =>
        {
            s["SIGN_IN_RATE_LIMIT"] = "3";
            s["TRUSTED_PROXIES"] = "127.0.0.1";
        });
        // An address of its own (the budget is shared by every instance, and by the other tests on this Redis).
        var address = $"10.{Random.Shared.Next(256)}.{Random.Shared.Next(256)}.{Random.Shared.Next(1, 255)}";
        gateway.Client.DefaultRequestHeaders.Add("X-Forwarded-For", address);
        using (var json = await gateway.Client.PostAsync("/oauth/device_authorization", new StringContent("{\"surface\":\"claude_code\"}", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal("invalid_request", await OAuthErrorAsync(json));
        }
        using (var huge = await gateway.Client.PostAsync("/oauth/device_authorization", Form(("surface", new string('x', 100_000)))))
        {
            Assert.Equal("invalid_request", await OAuthErrorAsync(huge, 413));
        }
        for (var i = 0; i < 3; i++)
        {
            await AuthorizeAsync(gateway);
        }
        using var limited = await gateway.Client.PostAsync("/oauth/device_authorization", Form(("surface", "claude_code")));
        Assert.Equal("slow_down", await OAuthErrorAsync(limited, 429));
        Assert.True(limited.Headers.RetryAfter is not null);
        Assert.Equal(3L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM device_authorizations"));
        Assert.Equal(address, await fx.ScalarAsync<string>(database, "SELECT DISTINCT client_address FROM device_authorizations"));
    }

    [Fact]
    public async Task The_token_endpoint_answers_every_device_code_error_claude_code_knows()
    {
        var (gateway, _) = await StartAsync();
        var authorization = await AuthorizeAsync(gateway);
        var deviceCode = authorization.GetProperty("device_code").GetString()!;

        using (var pending = await PollAsync(gateway, deviceCode))
        {
            Assert.Equal("authorization_pending", await OAuthErrorAsync(pending));
        }
        // At once again: faster than the interval.
        using (var fast = await PollAsync(gateway, deviceCode))
        {
            Assert.Equal("slow_down", await OAuthErrorAsync(fast));
        }
        await using (var db = Db(gateway))
        {
            Assert.Equal(10, (await db.DeviceAuthorizations.SingleAsync()).IntervalSeconds);
        }
        using (var unknown = await PollAsync(gateway, "not-a-device-code"))
        {
            Assert.Equal("invalid_grant", await OAuthErrorAsync(unknown));
        }
        using (var missing = await gateway.Client.PostAsync("/oauth/token", Form(("grant_type", OAuthEndpoints.DeviceCodeGrant))))
        {
            Assert.Equal("invalid_request", await OAuthErrorAsync(missing));
        }
        using (var twice = await gateway.Client.PostAsync("/oauth/token", Form(("grant_type", OAuthEndpoints.DeviceCodeGrant), ("device_code", deviceCode), ("device_code", deviceCode))))
        {
            Assert.Equal("invalid_request", await OAuthErrorAsync(twice));
        }
        using (var noGrant = await gateway.Client.PostAsync("/oauth/token", Form(("device_code", deviceCode))))
        {
            Assert.Equal("invalid_request", await OAuthErrorAsync(noGrant));
        }
        using (var otherGrant = await gateway.Client.PostAsync("/oauth/token", Form(("grant_type", "password"), ("username", "a"), ("password", "b"))))
        {
            Assert.Equal("unsupported_grant_type", await OAuthErrorAsync(otherGrant));
        }

        // Expired: the server says so, the client does not count.
        await using (var db = Db(gateway))
        {
            await db.DeviceAuthorizations.ExecuteUpdateAsync(s => s.SetProperty(d => d.ExpiresAt, DateTimeOffset.UtcNow.AddSeconds(-1)));
        }
        using (var expired = await PollAsync(gateway, deviceCode))
        {
            Assert.Equal("expired_token", await OAuthErrorAsync(expired));
        }
    }

    [Fact]
    public async Task A_denied_code_answers_access_denied_and_an_approved_one_gives_tokens_exactly_once()
    {
        var (gateway, database) = await StartAsync();
        var denied = await AuthorizeAsync(gateway);
        var deniedCode = SignInCodes.NormalizeUserCode(denied.GetProperty("user_code").GetString())!;
        Assert.True(await gateway.Services.GetRequiredService<SignInStore>().DenyAsync(deniedCode, CancellationToken.None));
        using (var poll = await PollAsync(gateway, denied.GetProperty("device_code").GetString()!))
        {
            Assert.Equal("access_denied", await OAuthErrorAsync(poll));
        }

        var person = Person();
        var authorization = await AuthorizeAsync(gateway);
        var code = SignInCodes.NormalizeUserCode(authorization.GetProperty("user_code").GetString())!;
        var (user, approved) = await gateway.Services.GetRequiredService<SignInStore>().ApproveAsync(code, person, null, CancellationToken.None);
        Assert.True(approved);
        var deviceCode = authorization.GetProperty("device_code").GetString()!;
        // Two polls at once: one gets the tokens, the other invalid_grant.
        var polls = await Task.WhenAll(PollAsync(gateway, deviceCode), PollAsync(gateway, deviceCode));
        var winner = Assert.Single(polls, p => p.StatusCode == HttpStatusCode.OK);
        Assert.Equal("invalid_grant", await OAuthErrorAsync(Assert.Single(polls, p => p != winner)));
        var tokens = await JsonAsync(winner, 200);
        Assert.Equal("Bearer", tokens.GetProperty("token_type").GetString());
        Assert.Equal(3600, tokens.GetProperty("expires_in").GetInt32());
        Assert.Equal("alice@example.com", tokens.GetProperty("email").GetString());
        Assert.False(string.IsNullOrEmpty(tokens.GetProperty("refresh_token").GetString()));

        var check = await gateway.Services.GetRequiredService<TokenService>().ValidateAsync(tokens.GetProperty("access_token").GetString());
        Assert.Equal(TokenStatus.Valid, check.Status);
        Assert.Equal("@" + user!.UserId, check.Identity!.DeviceId);
        Assert.Equal(user.UserId, check.Identity.UserId);
        Assert.Equal("alice@example.com", check.Identity.Email);
        Assert.Matches("^usr_[a-z0-9]{16}$", user.UserId);

        // The person and their sign-in record.
        Assert.Equal(1L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM users WHERE subject = @s AND 'engineering' = ANY(groups)", ("s", person.Subject)));
        Assert.Equal(user.UserId, await fx.ScalarAsync<string>(database, "SELECT owner_user_id FROM devices WHERE device_id = @d", ("d", "@" + user.UserId)));
        // The refresh token is kept only as its hash.
        Assert.Equal(1L, await fx.ScalarAsync<long>(database, "SELECT count(*) FROM refresh_tokens WHERE token_hash = @h",
            ("h", SignInCodes.Hash(tokens.GetProperty("refresh_token").GetString()!))));
    }

    [Fact]
    public async Task A_signed_in_person_is_answered_and_their_usage_row_carries_their_id_and_email()
    {
        var (gateway, database) = await StartAsync();
        var tokens = await SignInAsync(gateway, Person("bea"));
        var access = tokens.GetProperty("access_token").GetString()!;
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: access));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await StackFixture.StoredAsync(gateway, 1);
        var userId = await fx.ScalarAsync<string>(database, "SELECT user_id FROM usage_events WHERE user_email = 'bea@example.com'");
        Assert.Matches("^usr_[a-z0-9]{16}$", userId);
        Assert.Equal("@" + userId, await fx.ScalarAsync<string>(database, "SELECT device_id FROM usage_events"));

        // The device API's token renewal is not theirs: a sign-in is renewed where the provider is asked again.
        using var renew = await gateway.Client.SendAsync(Http.Post("/refresh", "{}", bearer: access));
        await Http.AssertErrorAsync(renew, 400, "invalid_request_error");
    }

    [Fact]
    public async Task Refresh_tokens_rotate_are_single_use_and_a_replay_ends_the_sign_in()
    {
        var (gateway, _) = await StartAsync();
        var first = (await SignInAsync(gateway, Person())).GetProperty("refresh_token").GetString()!;
        using var renewed = await RefreshAsync(gateway, first);
        var second = await JsonAsync(renewed, 200);
        var next = second.GetProperty("refresh_token").GetString()!;
        Assert.NotEqual(first, next);
        Assert.Equal(TokenStatus.Valid, (await gateway.Services.GetRequiredService<TokenService>().ValidateAsync(second.GetProperty("access_token").GetString())).Status);

        // The first token again (a stolen copy): refused, and the whole sign-in with it.
        using (var replay = await RefreshAsync(gateway, first))
        {
            Assert.Equal("invalid_grant", await OAuthErrorAsync(replay));
        }
        using (var after = await RefreshAsync(gateway, next))
        {
            Assert.Equal("invalid_grant", await OAuthErrorAsync(after));
        }
        using (var unknown = await RefreshAsync(gateway, "no-such-token"))
        {
            Assert.Equal("invalid_grant", await OAuthErrorAsync(unknown));
        }
        using (var missing = await gateway.Client.PostAsync("/oauth/token", Form(("grant_type", "refresh_token"))))
        {
            Assert.Equal("invalid_request", await OAuthErrorAsync(missing));
        }
    }

    [Fact]
    public async Task Two_refreshes_at_once_with_one_token_leave_at_most_one_sign_in()
    {
        var (gateway, _) = await StartAsync();
        var token = (await SignInAsync(gateway, Person())).GetProperty("refresh_token").GetString()!;
        var answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => RefreshAsync(gateway, token)));
        Assert.True(answers.Count(a => a.StatusCode == HttpStatusCode.OK) <= 1);
        Assert.Contains(answers, a => a.StatusCode == HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task A_deactivated_person_is_refused_on_the_request_path_within_a_second_and_at_refresh_with_invalid_grant()
    {
        var (gateway, database) = await StartAsync();
        var other = await fx.GatewayAsync(database, s =>
        {
            s["OIDC_AUTHORITY"] = UnusedAuthority;
            s["OIDC_CLIENT_ID"] = "claudeproxy-test";
            s["MIGRATE_ON_START"] = "false";
        });
        var tokens = await SignInAsync(gateway, Person("dan"));
        var access = tokens.GetProperty("access_token").GetString()!;
        var userId = (await gateway.Services.GetRequiredService<TokenService>().ValidateAsync(access)).Identity!.UserId;
        using (var ok = await other.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: access)))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        // What deactivation does: the person, their sign-in record, their refresh tokens.
        await using (var db = Db(gateway))
        {
            await db.Users.Where(u => u.UserId == userId).ExecuteUpdateAsync(s => s.SetProperty(u => u.Status, UserRecord.Deactivated));
            await db.Devices.Where(d => d.DeviceId == "@" + userId).ExecuteUpdateAsync(s => s.SetProperty(d => d.Status, "revoked"));
        }
        await gateway.Services.GetRequiredService<DeviceStandingCache>().ChangedAsync("@" + userId);
        var deadline = DateTime.UtcNow.AddSeconds(1);
        using var refused = await other.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: access));
        Assert.True(DateTime.UtcNow <= deadline.AddSeconds(5));
        var (_, message) = await Http.AssertErrorAsync(refused, 401, "authentication_error");
        Assert.Contains("/login", message);
        Assert.Equal("false", refused.Headers.GetValues("x-should-retry").Single());

        using var refresh = await RefreshAsync(gateway, tokens.GetProperty("refresh_token").GetString()!);
        Assert.Equal("invalid_grant", await OAuthErrorAsync(refresh, 401));

        // Signing in again is refused too: the code is denied and the poll says so.
        var authorization = await AuthorizeAsync(gateway);
        var code = SignInCodes.NormalizeUserCode(authorization.GetProperty("user_code").GetString())!;
        await using (var db = Db(gateway))
        {
            var person = await db.Users.SingleAsync(u => u.UserId == userId);
            var (_, approved) = await gateway.Services.GetRequiredService<SignInStore>()
                .ApproveAsync(code, new SignedInPerson(person.Issuer, person.Subject, person.Email, person.Name, person.Groups), null, CancellationToken.None);
            Assert.False(approved);
        }
        using var poll = await PollAsync(gateway, authorization.GetProperty("device_code").GetString()!);
        Assert.Equal("access_denied", await OAuthErrorAsync(poll));
    }

    [Fact]
    public async Task An_expired_sign_in_token_is_refused_with_should_retry_false_so_claude_code_asks_to_sign_in_again()
    {
        var (gateway, _) = await StartAsync(s => s["USER_TOKEN_LIFETIME_SECONDS"] = "60");
        var tokens = await SignInAsync(gateway, Person());
        Assert.Equal(60, tokens.GetProperty("expires_in").GetInt32());
        var time = gateway.Services.GetRequiredService<TokenService>();
        var check = await time.ValidateAsync(tokens.GetProperty("access_token").GetString());
        Assert.Equal(TimeSpan.FromSeconds(60), check.Identity!.ExpiresAt - check.Identity.IssuedAt);

        // A token of a device that expired keeps today's answer; a person's says to sign in again, without retrying.
        var expired = TokenForge.Make(fx.JwtSecret, deviceId: check.Identity.DeviceId, notBefore: DateTime.UtcNow.AddHours(-2),
            expires: DateTime.UtcNow.AddMinutes(-5));
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: expired));
        var (_, message) = await Http.AssertErrorAsync(response, 401, "authentication_error");
        Assert.Contains("/login", message);
        Assert.Equal("false", response.Headers.GetValues("x-should-retry").Single());
    }

    [Fact]
    public async Task Revocation_ends_a_sign_in_by_its_refresh_token_and_answers_200_for_anything_well_formed()
    {
        var (gateway, _) = await StartAsync();
        var tokens = await SignInAsync(gateway, Person());
        var refresh = tokens.GetProperty("refresh_token").GetString()!;
        using (var access = await gateway.Client.PostAsync("/oauth/revoke", Form(("token", tokens.GetProperty("access_token").GetString()!))))
        {
            Assert.Equal(HttpStatusCode.OK, access.StatusCode);
        }
        using (var revoke = await gateway.Client.PostAsync("/oauth/revoke", Form(("token", refresh), ("token_type_hint", "refresh_token"))))
        {
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
            Assert.Equal("no-store", revoke.Headers.CacheControl?.ToString());
        }
        using (var after = await RefreshAsync(gateway, refresh))
        {
            Assert.Equal("invalid_grant", await OAuthErrorAsync(after));
        }
        using (var unknown = await gateway.Client.PostAsync("/oauth/revoke", Form(("token", "never-issued"))))
        {
            Assert.Equal(HttpStatusCode.OK, unknown.StatusCode);
        }
        using var missing = await gateway.Client.PostAsync("/oauth/revoke", Form(("token_type_hint", "refresh_token")));
        Assert.Equal("invalid_request", await OAuthErrorAsync(missing));
    }

    [Fact]
    public async Task The_verification_page_shows_the_code_never_submits_by_itself_and_refuses_cross_site_or_tokenless_posts()
    {
        var (gateway, database) = await StartAsync();
        var authorization = await AuthorizeAsync(gateway);
        var userCode = authorization.GetProperty("user_code").GetString()!;
        var handler = new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false };
        using var browser = new HttpClient(handler) { BaseAddress = gateway.BaseUrl };
        using var page = await browser.GetAsync("/device?user_code=" + userCode.ToLowerInvariant());
        var html = await page.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains($"value=\"{userCode}\"", html);
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("frame-ancestors 'none'", page.Headers.GetValues("Content-Security-Policy").Single());
        var csrf = CsrfField().Match(html).Groups[1].Value;
        Assert.NotEmpty(csrf);

        // From another site: refused, whatever the form says.
        var crossSite = new HttpRequestMessage(HttpMethod.Post, "/device/deny") { Content = Form(("user_code", userCode), ("csrf", csrf)) };
        crossSite.Headers.Add("Sec-Fetch-Site", "cross-site");
        using (var refused = await browser.SendAsync(crossSite))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }
        var otherOrigin = new HttpRequestMessage(HttpMethod.Post, "/device/deny") { Content = Form(("user_code", userCode), ("csrf", csrf)) };
        otherOrigin.Headers.Add("Origin", "https://evil.example");
        using (var refused = await browser.SendAsync(otherOrigin))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }
        // Another browser (no cookie), even with a token it copied.
        using (var stranger = await gateway.Client.PostAsync("/device/deny", Form(("user_code", userCode), ("csrf", csrf))))
        {
            Assert.Equal(HttpStatusCode.Forbidden, stranger.StatusCode);
        }
        Assert.Equal("pending", await fx.ScalarAsync<string>(database, "SELECT status FROM device_authorizations"));

        // The person's own browser may deny it; the poll then says so.
        using (var deny = await browser.PostAsync("/device/deny", Form(("user_code", userCode), ("csrf", csrf))))
        {
            Assert.Equal(HttpStatusCode.OK, deny.StatusCode);
        }
        using var poll = await PollAsync(gateway, authorization.GetProperty("device_code").GetString()!);
        Assert.Equal("access_denied", await OAuthErrorAsync(poll));

        // An unknown code shows the form again with a message, not an error page.
        using var unknown = await browser.GetAsync("/device?user_code=BBBB-BBBB");
        Assert.Contains("unknown or has expired", await unknown.Content.ReadAsStringAsync());
        using var badCode = await browser.PostAsync("/device", Form(("user_code", "<script>"), ("csrf", csrf)));
        Assert.Equal(HttpStatusCode.BadRequest, badCode.StatusCode);
        Assert.DoesNotContain("<script>", await badCode.Content.ReadAsStringAsync());
    }

    [GeneratedRegex("name=\"csrf\" value=\"([^\"]+)\"")]
    private static partial Regex CsrfField();

    [Fact]
    public async Task Settings_that_cannot_work_stop_the_gateway_at_start_with_one_clear_line()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var noClient = await Assert.ThrowsAnyAsync<Exception>(() => fx.GatewayAsync(db, s => s["OIDC_AUTHORITY"] = "https://idp.example.com"));
        Assert.Contains("OIDC_CLIENT_ID", noClient.Message);
        var plainHttp = await Assert.ThrowsAnyAsync<Exception>(() => fx.GatewayAsync(db, s =>
        {
            s["OIDC_AUTHORITY"] = "http://idp.example.com";
            s["OIDC_CLIENT_ID"] = "x";
        }));
        Assert.Contains("https", plainHttp.Message);
        var settings = GatewayHost.DefaultSettings(fx.Simulator.BaseUrl, fx.MasterKey, fx.JwtSecret);
        settings["OIDC_AUTHORITY"] = "https://idp.example.com";
        settings["OIDC_CLIENT_ID"] = "x";
        var noPostgres = await Assert.ThrowsAnyAsync<Exception>(() => GatewayHost.StartAsync(settings));
        Assert.Contains("Postgres", noPostgres.Message);
    }
}
