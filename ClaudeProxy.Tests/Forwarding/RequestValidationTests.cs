using System.Net;
using System.Text;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;

namespace ClaudeProxy.Tests.Forwarding;

/// <summary>
/// Hostile request bodies are refused with a 400 that names the field, before anything is reserved in Redis,
/// forwarded to Anthropic or recorded in PostgreSQL.
/// </summary>
public sealed class RequestValidationTests(RequestValidationTests.Fixture fx) : IClassFixture<RequestValidationTests.Fixture>
{
    /// <summary>The stack, and one gateway that the many hostile bodies share.</summary>
    public sealed class Fixture : StackFixture
    {
        private Task<(GatewayHost Gateway, string Database)>? _shared;

        public Task<(GatewayHost Gateway, string Database)> SharedAsync() => _shared ??= StartSharedAsync();

        private async Task<(GatewayHost, string)> StartSharedAsync()
        {
            var db = await Postgres.CreateDatabaseAsync();
            return (await GatewayAsync(db), db);
        }
    }

    private const string Sonnet = "claude-sonnet-4-5-20250929";

    public static TheoryData<string, string, string> Hostile => new()
    {
        // route, body, the field the error must name
        { "/v1/messages", Body("-2147483648"), "max_tokens" },
        { "/v1/messages", Body("0"), "max_tokens" },
        { "/v1/messages", Body("-1"), "max_tokens" },
        { "/v1/messages", Body("1.5"), "max_tokens" },
        { "/v1/messages", Body("\"100\""), "max_tokens" },
        { "/v1/messages", Body("1e30"), "max_tokens" },
        { "/v1/messages", Body("1000001"), "max_tokens" },
        { "/v1/messages", Body("99999999999999999999"), "max_tokens" },
        { "/v1/messages", Body("null"), "max_tokens" },
        { "/v1/messages", Body("{\"a\":1}"), "max_tokens" },
        { "/v1/messages", """{"model":"claude-sonnet-4-5","messages":[]}""", "max_tokens" },
        { "/v1/messages", """{"model":"claude-sonnet-4-5","max_tokens":64,"max_tokens":-5,"messages":[]}""", "max_tokens" },
        { "/v1/messages", """{"model":"claude-sonnet-4-5\u0000","max_tokens":64,"messages":[]}""", "model" },
        { "/v1/messages", """{"model":"claude sonnet","max_tokens":64,"messages":[]}""", "model" },
        { "/v1/messages", """{"model":"claude-\n-sonnet","max_tokens":64,"messages":[]}""", "model" },
        { "/v1/messages", """{"model":"claude-sonnet-4-5\t","max_tokens":64,"messages":[]}""", "model" },
        { "/v1/messages", """{"model":"claude-sonnet-4-5-é","max_tokens":64,"messages":[]}""", "model" },
        { "/v1/messages", """{"model":"","max_tokens":64,"messages":[]}""", "model" },
        { "/v1/messages", "{\"model\":\"claude-" + new string('a', 5 * 1024) + "\",\"max_tokens\":64,\"messages\":[]}", "model" },
        { "/v1/messages", "{\"model\":\"claude-" + new string('a', 250) + "\",\"max_tokens\":64,\"messages\":[]}", "model" },
        { "/v1/messages", """{"model":["claude-sonnet-4-5"],"max_tokens":64,"messages":[]}""", "model" },
        { "/v1/messages", """{"model":"claude-sonnet-4-5","max_tokens":64,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":-3}],"messages":[]}""", "max_uses" },
        { "/v1/complete", """{"model":"claude-2.1","prompt":"\n\nHuman: Hi\n\nAssistant:","max_tokens_to_sample":-2147483648}""", "max_tokens_to_sample" },
        { "/v1/complete", """{"model":"claude-2.1","prompt":"\n\nHuman: Hi\n\nAssistant:"}""", "max_tokens_to_sample" },
        { "/v1/messages/count_tokens", """{"model":"claude-sonnet-4-5","max_tokens":-1,"messages":[]}""", "max_tokens" },
    };

    private static string Body(string maxTokens) => $$"""{"model":"{{Sonnet}}","max_tokens":{{maxTokens}},"messages":[{"role":"user","content":"Hi"}]}""";

    [Theory]
    [MemberData(nameof(Hostile))]
    public async Task A_hostile_field_gets_400_naming_it_and_nothing_is_reserved_forwarded_or_recorded(string route, string body, string field)
    {
        var (gateway, db) = await fx.SharedAsync();
        var writer = gateway.Services.GetRequiredService<UsageWriter>();
        var device = TestSecrets.DeviceId();
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["spend_cap"] = 5 });
        var marker = Guid.NewGuid().ToString("N");
        var evals = await EvalsAsync();

        using var response = await gateway.Client.SendAsync(Http.Post(route, body, bearer: token, headers: ("x-test-marker", marker)));

        var (_, message) = await Http.AssertErrorAsync(response, 400, "invalid_request_error");
        Assert.StartsWith(field == "max_uses" ? "tools.max_uses" : field + ":", message);
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
        Assert.Equal(evals, await EvalsAsync());
        // A request that is then admitted is recorded: the refused one before it was not.
        var stored = writer.Stored;
        using (var ok = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        await writer.WaitForStoredAsync(stored + 1).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(1L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events WHERE device_id = @d", ("d", device)));
    }

    [Theory]
    [InlineData("1.0e3")]
    [InlineData("1000.0")]
    [InlineData("1")]
    [InlineData("1000000")]
    public async Task Integral_numbers_up_to_the_ceiling_are_forwarded(string maxTokens)
    {
        var (gateway, _) = await fx.SharedAsync();
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        var body = Body(maxTokens);
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", body, bearer: token, headers: ("x-test-marker", marker)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Encoding.UTF8.GetBytes(body), fx.Simulator.State.Find("x-test-marker", marker)!.Body);
    }

    [Theory]
    [InlineData("claude-sonnet-4-5-20250929")]
    [InlineData("anthropic.claude-3-5-sonnet-20241022-v2:0")]
    [InlineData("claude-3-5-sonnet-v2@20241022")]
    [InlineData("us.anthropic.claude_sonnet/4.5")]
    public async Task Model_ids_of_every_provider_shape_are_forwarded(string model)
    {
        var (gateway, _) = await fx.SharedAsync();
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId(), claims: new Dictionary<string, object> { ["models"] = new[] { "*" } });
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", $$"""{"model":"{{model}}","max_tokens":5,"messages":[]}""", bearer: token));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task A_negative_max_tokens_cannot_buy_a_capped_device_unlimited_spend()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var device = TestSecrets.DeviceId();
        var token = TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["spend_cap"] = 0.01 });
        // Sonnet, 1000 output tokens at $15/M: $0.015 of worst case, more than the $0.01 cap.
        var overCap = Body("1000");
        using (var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", overCap, bearer: token)))
        {
            var (_, message) = await Http.AssertErrorAsync(refused, 429, "rate_limit_error");
            Assert.Contains("spend cap", message);
        }

        var marker = Guid.NewGuid().ToString("N");
        using (var hostile = await gateway.Client.SendAsync(Http.Post("/v1/messages", Body("-2147483648"), bearer: token, headers: ("x-test-marker", marker))))
        {
            var (_, message) = await Http.AssertErrorAsync(hostile, 400, "invalid_request_error");
            Assert.Contains("max_tokens", message);
        }
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));

        for (var i = 0; i < 3; i++)
        {
            using var still = await gateway.Client.SendAsync(Http.Post("/v1/messages", overCap, bearer: token));
            var (_, message) = await Http.AssertErrorAsync(still, 429, "rate_limit_error");
            Assert.Contains("spend cap", message);
        }
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events WHERE device_id = @d", ("d", device)));
    }

    [Fact]
    public async Task A_spend_cap_of_zero_refuses_and_no_cap_admits_any_worst_case()
    {
        var (gateway, _) = await fx.SharedAsync();
        var zero = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId(), claims: new Dictionary<string, object> { ["spend_cap"] = 0 });
        var marker = Guid.NewGuid().ToString("N");
        using (var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Body("1"), bearer: zero, headers: ("x-test-marker", marker))))
        {
            var (_, message) = await Http.AssertErrorAsync(refused, 429, "rate_limit_error");
            Assert.Contains("spend cap", message);
        }
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));

        // No spend_cap claim and no DEFAULT_SPEND_CAP: no cap, even for the largest worst case there is.
        var uncapped = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId());
        using var admitted = await gateway.Client.SendAsync(Http.Post("/v1/messages",
            """{"model":"claude-opus-4-1-20250805","max_tokens":1000000,"messages":[]}""", bearer: uncapped));
        Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
    }

    private async Task<long> EvalsAsync()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.ConnectionString + ",allowAdmin=true");
        var info = (string)(await redis.GetDatabase().ExecuteAsync("INFO", "commandstats"))!;
        return info.Split('\n').Where(l => l.StartsWith("cmdstat_eval", StringComparison.Ordinal))
            .Sum(l => long.Parse(l.Split("calls=")[1].Split(',')[0], System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>The body scan alone, on the bodies a careless or hostile client sends.</summary>
public sealed class RequestBodyScanTests
{
    private static async Task<(RequestBody? Body, int Status, string? Error)> ScanAsync(string json, ApiRoute route = ApiRoute.Messages)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var context = new DefaultHttpContext();
        context.Request.Body = new MemoryStream(bytes, writable: false);
        context.Request.ContentLength = bytes.Length;
        return await RequestBody.ReadAsync(context, 2 * 1024 * 1024, route);
    }

    [Fact]
    public async Task Server_tools_are_counted_with_their_max_uses_or_the_default()
    {
        var (body, _, error) = await ScanAsync("""
            {"model":"claude-sonnet-4-5","max_tokens":10,"tools":[
              {"name":"get_weather","input_schema":{"type":"object","properties":{"max_uses":{"type":"integer"}}},"max_uses":"whatever"},
              {"type":"web_search_20250305","name":"web_search","max_uses":5},
              {"name":"web_search","type":"web_search_20260209"},
              {"type":"web\u005ffetch_20250910","name":"web_fetch","max_uses":3,"max_content_tokens":2000},
              {"type":"web_fetch_20250910","name":"web_fetch"}
            ],"messages":[]}
            """);
        Assert.Null(error);
        using (body)
        {
            Assert.Equal(5 + RequestBody.DefaultServerToolUses, body!.WebSearches);
            Assert.Equal(3 * 2000, body.WebFetchTokens);
        }
    }

    [Fact]
    public async Task A_top_level_key_hidden_inside_another_value_is_not_read_as_top_level()
    {
        var (body, _, error) = await ScanAsync("""{"stream":{"max_tokens":-1,"model":"x y"},"model":"claude-sonnet-4-5","max_tokens":7,"messages":[]}""");
        Assert.Null(error);
        using (body)
        {
            Assert.Equal(7, body!.MaxTokens);
            Assert.Equal("claude-sonnet-4-5", body.Model);
        }
    }

    [Fact]
    public async Task An_escaped_model_id_is_judged_by_what_it_decodes_to()
    {
        var (ok, _, _) = await ScanAsync("""{"model":"claude-\u0073onnet-4-5","max_tokens":7}""");
        using (ok)
        {
            Assert.Equal("claude-sonnet-4-5", ok!.Model);
        }
        var (bad, status, error) = await ScanAsync("""{"model":"claude\u0020sonnet","max_tokens":7}""");
        Assert.Null(bad);
        Assert.Equal(400, status);
        Assert.StartsWith("model:", error);
    }

    [Fact]
    public async Task The_buffer_grows_with_the_bytes_received_not_the_declared_length()
    {
        // Declares 2 MB and sends 200 bytes, then stops: the gateway must not hold 2 MB for it.
        var sent = Encoding.UTF8.GetBytes("""{"model":"claude-sonnet-4-5","max_tokens":7,"messages":[{"role":"user","content":"Hi"}]}""");
        var stream = new CountingStream(sent);
        var context = new DefaultHttpContext();
        context.Request.Body = stream;
        context.Request.ContentLength = 2 * 1024 * 1024;
        var (body, _, _) = await RequestBody.ReadAsync(context, 2 * 1024 * 1024);
        body?.Dispose();
        Assert.InRange(stream.LargestRead, 1, 16 * 1024);
    }

    /// <summary>Serves its bytes and records the largest buffer a reader offered it.</summary>
    private sealed class CountingStream(byte[] bytes) : Stream
    {
        private int _position;

        public int LargestRead { get; private set; }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            LargestRead = Math.Max(LargestRead, buffer.Length);
            var n = Math.Min(buffer.Length, bytes.Length - _position);
            bytes.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => bytes.Length;
        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
