using System.Net;
using System.Text;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Tokens;

public sealed class EntitlementFixture : ProxyFixture
{
    protected override void Configure(Dictionary<string, string?> settings)
    {
        settings["DEFAULT_MODELS"] = "claude-sonnet-*,claude-haiku-4-5*";
        settings["MAX_PAYLOAD_SIZE"] = "64kb";
        settings["RATE_LIMIT_MAX"] = "100";
        settings["CORS_ORIGINS"] = "https://console.example.com";
    }
}

public sealed class EntitlementTests(EntitlementFixture fx) : IClassFixture<EntitlementFixture>
{
    private HttpClient Client => fx.Gateway.Client;

    [Fact]
    public async Task A_model_outside_the_allowlist_gets_403_naming_it()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        using var denied = await Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-opus-4-5","max_tokens":5,"messages":[]}""", bearer: token, headers: ("x-test-marker", marker)));
        var (_, message) = await Http.AssertErrorAsync(denied, 403, "permission_error");
        Assert.Contains("claude-opus-4-5", message);
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));

        using var allowed = await Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-haiku-4-5-20251001","max_tokens":5,"messages":[]}""", bearer: token));
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        using var counted = await Client.SendAsync(Http.Post("/v1/messages/count_tokens", """{"model":"claude-opus-4-1","messages":[]}""", bearer: token));
        await Http.AssertErrorAsync(counted, 403, "permission_error");
    }

    [Fact]
    public async Task An_oversized_body_is_refused_from_its_content_length_before_it_is_read()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        var body = "{\"model\":\"claude-sonnet-4-5\",\"pad\":\"" + new string('x', 70 * 1024) + "\"}";
        using var response = await Client.SendAsync(Http.Post("/v1/messages", body, bearer: token, headers: ("x-test-marker", marker)));
        await Http.AssertErrorAsync(response, 413, "request_too_large");
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    [Fact]
    public async Task A_chunked_body_that_grows_past_the_limit_is_refused()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        using var request = Http.Post("/v1/messages", "", bearer: token, headers: ("x-test-marker", marker));
        request.Content = new StreamContent(new EndlessJson());
        request.Content.Headers.ContentType = new("application/json");
        using var response = await Client.SendAsync(request);
        await Http.AssertErrorAsync(response, 413, "request_too_large");
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("""{"max_tokens":10,"messages":[]}""")]
    [InlineData("""{"model":42}""")]
    [InlineData("""{"model":"claude-sonnet-4-5","messages":[""")]
    [InlineData("""["model"]""")]
    public async Task A_body_that_is_not_json_or_has_no_model_gets_400(string body)
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var response = await Client.SendAsync(Http.Post("/v1/messages", body, bearer: token));
        await Http.AssertErrorAsync(response, 400, "invalid_request_error");
    }

    [Fact]
    public async Task The_101st_request_in_a_window_gets_429_with_retry_after()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        for (var i = 0; i < 100; i++)
        {
            using var ok = await Client.SendAsync(Http.Post("/v1/messages/count_tokens", """{"model":"claude-sonnet-4-5","messages":[]}""", bearer: token));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using var limited = await Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        await Http.AssertErrorAsync(limited, 429, "rate_limit_error");
        var retryAfter = int.Parse(limited.Headers.GetValues("retry-after").Single());
        Assert.InRange(retryAfter, 1, 60);
        Assert.Equal("100", limited.Headers.GetValues("anthropic-ratelimit-requests-limit").Single());
        Assert.Equal("0", limited.Headers.GetValues("anthropic-ratelimit-requests-remaining").Single());
        Assert.True(DateTimeOffset.TryParse(limited.Headers.GetValues("anthropic-ratelimit-requests-reset").Single(), out _));

        // Another device is not affected.
        var other = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var otherOk = await Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: other));
        Assert.Equal(HttpStatusCode.OK, otherOk.StatusCode);
    }

    [Fact]
    public async Task The_rate_limit_claim_overrides_the_default()
    {
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId(), claims: new Dictionary<string, object> { ["rate_limit"] = 3, ["models"] = new[] { "claude-*" } });
        for (var i = 0; i < 3; i++)
        {
            using var ok = await Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using var limited = await Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        await Http.AssertErrorAsync(limited, 429, "rate_limit_error");
        Assert.Equal("3", limited.Headers.GetValues("anthropic-ratelimit-requests-limit").Single());
    }

    [Fact]
    public async Task Cors_preflight_allows_the_configured_origin_only()
    {
        using var allowed = new HttpRequestMessage(HttpMethod.Options, "/v1/messages");
        allowed.Headers.Add("Origin", "https://console.example.com");
        allowed.Headers.Add("Access-Control-Request-Method", "POST");
        allowed.Headers.Add("Access-Control-Request-Headers", "x-api-key,anthropic-version");
        using var ok = await Client.SendAsync(allowed);
        Assert.Equal("https://console.example.com", ok.Headers.GetValues("Access-Control-Allow-Origin").Single());

        using var other = new HttpRequestMessage(HttpMethod.Options, "/v1/messages");
        other.Headers.Add("Origin", "https://evil.example.com");
        other.Headers.Add("Access-Control-Request-Method", "POST");
        using var refused = await Client.SendAsync(other);
        Assert.False(refused.Headers.Contains("Access-Control-Allow-Origin"));
    }

    /// <summary>A JSON body of 300 KB with no declared length, sent chunked.</summary>
    private sealed class EndlessJson : Stream
    {
        private readonly byte[] _prefix = Encoding.UTF8.GetBytes("{\"model\":\"claude-sonnet-4-5\",\"pad\":\"");
        private long _position;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            count = (int)Math.Min(count, 300 * 1024 - _position);
            for (var i = 0; i < count; i++, _position++)
            {
                buffer[offset + i] = _position < _prefix.Length ? _prefix[_position] : (byte)'x';
            }
            return count;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
