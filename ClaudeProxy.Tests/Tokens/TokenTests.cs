using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Tokens;

public sealed class TokenTests(ProxyFixture fx) : IClassFixture<ProxyFixture>
{
    public static TheoryData<string> BadTokens => ["none", "garbage", "wrong-signature", "alg-none", "hs512", "expired", "not-yet-valid", "wrong-issuer", "wrong-audience"];

    private string Token(string kind) => kind switch
    {
        "none" => "",
        "garbage" => "not.a.jwt",
        "wrong-signature" => TokenForge.Make(TestSecrets.JwtSecret()),
        "alg-none" => TokenForge.AlgNone(),
        "hs512" => TokenForge.Hs512(fx.JwtSecret),
        "expired" => TokenForge.Make(fx.JwtSecret, notBefore: DateTime.UtcNow.AddHours(-3), expires: DateTime.UtcNow.AddHours(-1)),
        "not-yet-valid" => TokenForge.Make(fx.JwtSecret, notBefore: DateTime.UtcNow.AddHours(1), expires: DateTime.UtcNow.AddHours(2)),
        "wrong-issuer" => TokenForge.Make(fx.JwtSecret, issuer: "someone-else"),
        "wrong-audience" => TokenForge.Make(fx.JwtSecret, audience: "another-service"),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    [Theory]
    [MemberData(nameof(BadTokens))]
    public async Task Every_bad_token_gets_401_and_nothing_reaches_upstream(string kind)
    {
        var marker = Guid.NewGuid().ToString("N");
        var token = Token(kind);
        using var request = Http.Post("/v1/messages", Http.SmallMessage, bearer: token.Length > 0 ? token : null, headers: ("x-test-marker", marker));
        using var response = await fx.Gateway.Client.SendAsync(request);
        await Http.AssertErrorAsync(response, 401, "authentication_error");
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    [Fact]
    public async Task A_forged_token_with_the_right_secret_is_accepted_which_proves_the_forge_is_sound()
    {
        using var response = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: TokenForge.Make(fx.JwtSecret)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Bootstrap_returns_a_token_the_gateway_accepts_as_bearer_and_as_api_key()
    {
        using var response = await fx.Gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = "laptop-42.example:a_b", app_version = "2.1.0" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var token = json.RootElement.GetProperty("wrapper_token").GetString()!;
        Assert.Equal(fx.Gateway.BaseUrl.ToString().TrimEnd('/'), json.RootElement.GetProperty("proxy_base_url").GetString());
        var expires = json.RootElement.GetProperty("expires_at").GetDateTimeOffset();
        Assert.InRange(expires, DateTimeOffset.UtcNow.AddHours(23.9), DateTimeOffset.UtcNow.AddHours(24.1));

        using var viaBearer = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, viaBearer.StatusCode);
        using var viaApiKey = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, apiKey: token));
        Assert.Equal(HttpStatusCode.OK, viaApiKey.StatusCode);
    }

    [Theory]
    [InlineData("""{"device_id":""}""")]
    [InlineData("""{"device_id":"has space"}""")]
    [InlineData("""{"device_id":"slash/y"}""")]
    // A trailing newline: a pattern anchored with $ would let it through into records and log lines.
    [InlineData("""{"device_id":"laptop\n"}""")]
    [InlineData("""{"device_id":"laptop\r\n"}""")]
    [InlineData("""{"device_id":12}""")]
    [InlineData("""{"app_version":"1"}""")]
    [InlineData("""{"device_id":"ok","app_version":5}""")]
    [InlineData("""not json""")]
    [InlineData("""[]""")]
    public async Task Bootstrap_refuses_bad_input_with_400(string body)
    {
        using var response = await fx.Gateway.Client.SendAsync(Http.Post("/bootstrap", body));
        await Http.AssertErrorAsync(response, 400, "invalid_request_error");
    }

    [Fact]
    public async Task Bootstrap_refuses_a_device_id_over_128_characters()
    {
        using var ok = await fx.Gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = new string('a', 128) });
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        using var tooLong = await fx.Gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = new string('a', 129) });
        await Http.AssertErrorAsync(tooLong, 400, "invalid_request_error");
    }

    [Fact]
    public async Task Refresh_gives_a_new_working_token_and_an_expired_one_is_told_to_bootstrap()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var refreshed = await fx.Gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: token));
        Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
        using var json = JsonDocument.Parse(await refreshed.Content.ReadAsStringAsync());
        var newToken = json.RootElement.GetProperty("wrapper_token").GetString()!;
        Assert.NotEqual(token, newToken);
        using var works = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: newToken));
        Assert.Equal(HttpStatusCode.OK, works.StatusCode);

        var expired = TokenForge.Make(fx.JwtSecret, notBefore: DateTime.UtcNow.AddHours(-3), expires: DateTime.UtcNow.AddHours(-1));
        using var refused = await fx.Gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: expired));
        var (_, message) = await Http.AssertErrorAsync(refused, 401, "authentication_error");
        Assert.Contains("bootstrap", message, StringComparison.OrdinalIgnoreCase);
    }
}
