using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Models.Models;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Forwarding;

/// <summary>One gateway with Redis and Postgres, whose request bodies may be at most 64 KB.</summary>
public sealed class GatewayModeFixture : StackFixture, IAsyncLifetime
{
    public string Database { get; private set; } = "";
    public GatewayHost Gateway { get; private set; } = null!;

    async Task IAsyncLifetime.InitializeAsync()
    {
        await InitializeAsync();
        Database = await Postgres.CreateDatabaseAsync();
        Gateway = await GatewayAsync(Database, s => { s["MAX_PAYLOAD_SIZE"] = "64kb"; s["ADMIN_API_KEY"] = TestSecrets.OperatorKey; });
    }
}

/// <summary>
/// What Claude Code calls besides the Messages API when it is signed in through the gateway: the models its token
/// lets it use, its own telemetry (accepted and dropped) and its managed settings (none yet).
/// </summary>
public sealed class GatewayModeTests(GatewayModeFixture fx) : IClassFixture<GatewayModeFixture>
{
    private HttpClient Client => fx.Gateway.Client;

    private string Token(string device, params string[] models) =>
        TokenForge.Make(fx.JwtSecret, deviceId: device, claims: new Dictionary<string, object> { ["models"] = models });

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static string[] Ids(JsonElement page) => [.. page.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!)];

    /// <summary>
    /// The usage rows of a device once it has at least <paramref name="expected"/>. Events are stored in the order
    /// they were recorded, so a row that should not exist would be stored no later than the last one expected.
    /// </summary>
    private async Task<List<(string Endpoint, int Status, string Model)>> UsageRowsAsync(string device, int expected)
    {
        var writer = fx.Gateway.Services.GetRequiredService<UsageWriter>();
        while (true)
        {
            var stored = writer.Stored;
            var rows = await RowsAsync(device);
            if (rows.Count >= expected)
            {
                return rows;
            }
            await writer.WaitForStoredAsync(stored + 1).WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    private async Task<List<(string Endpoint, int Status, string Model)>> RowsAsync(string device)
    {
        await using var connection = fx.Connect(fx.Database);
        await using var command = new Npgsql.NpgsqlCommand("SELECT endpoint, status, model FROM usage_events WHERE device_id = @d ORDER BY time", connection);
        command.Parameters.AddWithValue("d", device);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<(string, int, string)>();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.GetString(0), reader.GetInt32(1), reader.GetString(2)));
        }
        return rows;
    }

    [Fact]
    public async Task A_token_for_claude_haiku_lists_only_haiku_models_in_anthropics_shape()
    {
        var token = Token(TestSecrets.DeviceId(), "claude-haiku-*");
        var marker = Guid.NewGuid().ToString("N");
        using var response = await Client.SendAsync(Http.Get("/v1/models?limit=1000", token, ("x-test-marker", marker)));
        var page = await JsonAsync(response);

        Assert.Equal(["claude-haiku-4-5-20251001"], Ids(page));
        var model = page.GetProperty("data")[0];
        Assert.Equal("model", model.GetProperty("type").GetString());
        Assert.Equal("Claude Haiku 4.5", model.GetProperty("display_name").GetString());
        Assert.Equal("2025-10-15T00:00:00Z", model.GetProperty("created_at").GetString());
        Assert.False(page.GetProperty("has_more").GetBoolean());
        Assert.Equal("claude-haiku-4-5-20251001", page.GetProperty("first_id").GetString());
        Assert.Equal("claude-haiku-4-5-20251001", page.GetProperty("last_id").GetString());
        Assert.StartsWith("req_sim_", response.Headers.GetValues("request-id").Single());
        // The whole list is asked for, so a page of the allowed models is never cut short by models the caller cannot see.
        Assert.Equal("/v1/models?limit=1000", fx.Simulator.State.Find("x-test-marker", marker)!.PathAndQuery);
    }

    [Fact]
    public async Task The_sdk_pages_through_exactly_the_allowed_models()
    {
        var client = new AnthropicClient
        {
            BaseUrl = fx.Gateway.BaseUrl.ToString().TrimEnd('/'),
            AuthToken = Token(TestSecrets.DeviceId("sdk"), "claude-opus-*", "claude-sonnet-*"),
            ApiKey = null,
            MaxRetries = 0,
        };
        var seen = new List<string>();
        var page = await client.Models.List(new ModelListParams { Limit = 1 }).WaitAsync(TimeSpan.FromSeconds(30));
        for (var pages = 0; pages < 10; pages++)
        {
            seen.AddRange(page.Items.Select(m => m.ID));
            Assert.All(page.Items, m => Assert.False(string.IsNullOrEmpty(m.DisplayName)));
            if (!page.HasNext())
            {
                break;
            }
            page = await page.Next().WaitAsync(TimeSpan.FromSeconds(30));
        }
        Assert.Equal(["claude-opus-4-5-20251101", "claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"], seen);

        var all = await client.Models.List().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(seen, all.Items.Select(m => m.ID));
        Assert.Empty((await all.Next().WaitAsync(TimeSpan.FromSeconds(30))).Items);
    }

    [Fact]
    public async Task Cursors_page_forward_and_back_over_the_allowed_models_only()
    {
        var token = Token(TestSecrets.DeviceId(), "claude-opus-*", "claude-sonnet-*");
        async Task<JsonElement> PageAsync(string query)
        {
            using var response = await Client.SendAsync(Http.Get("/v1/models?" + query, token));
            return await JsonAsync(response);
        }

        var second = await PageAsync("limit=1&after_id=claude-opus-4-5-20251101");
        Assert.Equal(["claude-sonnet-4-5-20250929"], Ids(second));
        Assert.True(second.GetProperty("has_more").GetBoolean());

        var lastTwo = await PageAsync("limit=2&after_id=claude-opus-4-5-20251101");
        Assert.Equal(["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"], Ids(lastTwo));
        Assert.False(lastTwo.GetProperty("has_more").GetBoolean());
        Assert.Equal("claude-opus-4-1-20250805", lastTwo.GetProperty("last_id").GetString());

        var back = await PageAsync("limit=1&before_id=claude-opus-4-1-20250805");
        Assert.Equal(["claude-sonnet-4-5-20250929"], Ids(back));
        Assert.True(back.GetProperty("has_more").GetBoolean());
        var first = await PageAsync("before_id=claude-sonnet-4-5-20250929");
        Assert.Equal(["claude-opus-4-5-20251101"], Ids(first));
        Assert.False(first.GetProperty("has_more").GetBoolean());

        // Past the end, and from a model the caller cannot see (haiku sits between opus and sonnet upstream) or that
        // does not exist: the same empty page, so the two cannot be told apart.
        foreach (var query in new[] { "after_id=claude-opus-4-1-20250805", "after_id=claude-haiku-4-5-20251001", "after_id=claude-nothing",
                     "before_id=claude-haiku-4-5-20251001", "before_id=claude-opus-4-5-20251101" })
        {
            var empty = await PageAsync(query);
            Assert.Empty(Ids(empty));
            Assert.False(empty.GetProperty("has_more").GetBoolean());
            Assert.Equal(JsonValueKind.Null, empty.GetProperty("first_id").ValueKind);
            Assert.Equal(JsonValueKind.Null, empty.GetProperty("last_id").ValueKind);
        }
    }

    [Fact]
    public async Task A_compressed_upstream_list_is_filtered_as_well_and_other_query_parameters_go_upstream()
    {
        var token = Token(TestSecrets.DeviceId(), "claude-opus-*");
        var marker = Guid.NewGuid().ToString("N");
        using var response = await Client.SendAsync(Http.Get("/v1/models?beta=true&Limit=1", token, ("x-test-marker", marker), ("x-sim-gzip", "1"), ("accept-encoding", "gzip")));
        Assert.Null(response.Content.Headers.ContentEncoding.FirstOrDefault());
        var page = await JsonAsync(response);
        Assert.Equal(["claude-opus-4-5-20251101"], Ids(page));
        Assert.True(page.GetProperty("has_more").GetBoolean());
        // Other query parameters go upstream as they came; the caller's paging does not.
        Assert.Equal("/v1/models?beta=true&limit=1000", fx.Simulator.State.Find("x-test-marker", marker)!.PathAndQuery);
    }

    [Theory]
    [InlineData("limit=-1")]
    [InlineData("limit=0")]
    [InlineData("limit=1001")]
    [InlineData("limit=100000")]
    [InlineData("limit=99999999999999999999")]
    [InlineData("limit=abc")]
    [InlineData("limit=")]
    [InlineData("limit=%2B5")]
    [InlineData("limit=1&limit=2")]
    [InlineData("after_id=claude-opus-4-5-20251101&before_id=claude-opus-4-1-20250805")]
    public async Task Bad_paging_gets_400_and_is_neither_forwarded_nor_recorded(string query)
    {
        var device = TestSecrets.DeviceId();
        var token = Token(device, "claude-*");
        var marker = Guid.NewGuid().ToString("N");
        using (var bad = await Client.SendAsync(Http.Get("/v1/models?" + query, token, ("x-test-marker", marker))))
        {
            var (_, message) = await Http.AssertErrorAsync(bad, 400, "invalid_request_error");
            Assert.Contains(query.Contains("before_id") ? "after_id" : "limit", message);
        }
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));

        using (var good = await Client.SendAsync(Http.Get("/v1/models", token)))
        {
            await JsonAsync(good);
        }
        Assert.Equal([("models", 200, "")], await UsageRowsAsync(device, 1));
    }

    [Fact]
    public async Task A_model_outside_the_allowlist_is_not_found_as_an_unknown_model_would_be_and_never_goes_upstream()
    {
        var device = TestSecrets.DeviceId();
        var token = Token(device, "claude-haiku-*");
        var marker = Guid.NewGuid().ToString("N");
        using (var hidden = await Client.SendAsync(Http.Get("/v1/models/claude-opus-4-5-20251101", token, ("x-test-marker", marker))))
        {
            var (_, message) = await Http.AssertErrorAsync(hidden, 404, "not_found_error");
            Assert.Equal("model: claude-opus-4-5-20251101", message);
        }
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));

        // An allowed name that Anthropic does not know: its own 404, in the same words.
        using (var unknown = await Client.SendAsync(Http.Get("/v1/models/claude-haiku-9-9", token)))
        {
            var (_, message) = await Http.AssertErrorAsync(unknown, 404, "not_found_error");
            Assert.Equal("model: claude-haiku-9-9", message);
        }
        using (var allowed = await Client.SendAsync(Http.Get("/v1/models/claude-haiku-4-5-20251001", token)))
        {
            var model = await JsonAsync(allowed);
            Assert.Equal("claude-haiku-4-5-20251001", model.GetProperty("id").GetString());
            Assert.Equal("Claude Haiku 4.5", model.GetProperty("display_name").GetString());
        }
        // Both requests that reached Anthropic are recorded as the models endpoint; the refusal is not.
        Assert.Equal([("models", 404, ""), ("models", 200, "")], await UsageRowsAsync(device, 2));
    }

    [Fact]
    public async Task Upstream_errors_on_the_list_reach_the_client_unmodified()
    {
        var token = Token(TestSecrets.DeviceId(), "claude-*");
        using var response = await Client.SendAsync(Http.Get("/v1/models", token, ("x-sim-status", "429"), ("x-sim-retry-after", "7")));
        var (_, message) = await Http.AssertErrorAsync(response, 429, "rate_limit_error");
        Assert.Equal("simulated 429", message);
        Assert.Equal("7", response.Headers.GetValues("retry-after").Single());
        Assert.StartsWith("req_sim_", response.Headers.GetValues("request-id").Single());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("forged")]
    [InlineData("expired")]
    public async Task The_models_need_a_valid_token(string? kind)
    {
        var token = kind switch
        {
            "forged" => TokenForge.Make(TestSecrets.JwtSecret()),
            "expired" => TokenForge.Make(fx.JwtSecret, notBefore: DateTime.UtcNow.AddHours(-3), expires: DateTime.UtcNow.AddHours(-1)),
            _ => null,
        };
        var marker = Guid.NewGuid().ToString("N");
        foreach (var path in new[] { "/v1/models", "/v1/models/claude-haiku-4-5-20251001" })
        {
            using var response = await Client.SendAsync(Http.Get(path, token, ("x-test-marker", marker)));
            await Http.AssertErrorAsync(response, 401, "authentication_error");
        }
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    public static TheoryData<string, string, string> TelemetryCases()
    {
        var cases = new TheoryData<string, string, string>();
        foreach (var signal in new[] { "metrics", "logs", "traces" })
        {
            cases.Add(signal, "application/x-protobuf", "");
            cases.Add(signal, "application/json", "{}");
            cases.Add(signal, "application/json; charset=utf-8", "{}");
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(TelemetryCases))]
    public async Task Telemetry_is_accepted_and_dropped_without_a_usage_event(string signal, string contentType, string answer)
    {
        var device = TestSecrets.DeviceId();
        var token = Token(device, "claude-*");
        var received = fx.Simulator.State.ReceivedCount;
        using (var request = Http.Post("/v1/" + signal, "", bearer: token))
        {
            request.Content = new ByteArrayContent([0x0a, 0x03, 0x66, 0x6f, 0x6f, 0x12, 0x00]);
            request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
            using var response = await Client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(answer.Length > 0 ? "application/json" : "application/x-protobuf", response.Content.Headers.ContentType!.MediaType);
            Assert.Equal(answer, await response.Content.ReadAsStringAsync());
        }
        Assert.Equal(received, fx.Simulator.State.ReceivedCount);

        using (var models = await Client.SendAsync(Http.Get("/v1/models", token)))
        {
            await JsonAsync(models);
        }
        Assert.Equal([("models", 200, "")], await UsageRowsAsync(device, 1));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("forged")]
    [InlineData("expired")]
    public async Task Telemetry_is_accepted_whatever_the_token(string? kind)
    {
        var token = kind switch
        {
            "forged" => TokenForge.Make(TestSecrets.JwtSecret()),
            "expired" => TokenForge.Make(fx.JwtSecret, notBefore: DateTime.UtcNow.AddHours(-3), expires: DateTime.UtcNow.AddHours(-1)),
            _ => null,
        };
        using var response = await Client.SendAsync(Http.Post("/v1/logs", """{"resourceLogs":[]}""", bearer: token));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("{}", await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_endless_telemetry_body_is_answered_200_and_cut_after_the_payload_limit(bool declared)
    {
        // Content-Length: 1 GB (the gateway answers at once), or chunked without end (it answers once past 64 KB).
        var (answer, sent, closed) = await PostWithoutEndAsync("/v1/traces", "application/x-protobuf",
            declared ? "Content-Length: 1073741824" : "Transfer-Encoding: chunked", chunked: !declared);
        Assert.True(closed, "the gateway kept reading a body without end");
        Assert.StartsWith("HTTP/1.1 200", answer);
        Assert.Contains("Connection: close", answer, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("Content-Type: application/x-protobuf", answer, StringComparison.OrdinalIgnoreCase);
        // What was sent beyond what the gateway read sat in socket buffers, never in the gateway's memory.
        Assert.InRange(sent, 0, 64L * 1024 * 1024);
    }

    /// <summary>
    /// Sends a body that never ends on a raw connection (HttpClient gives up on the response once it cannot send),
    /// and returns what came back, how much was sent, and whether the gateway closed the connection.
    /// </summary>
    private async Task<(string Answer, long Sent, bool Closed)> PostWithoutEndAsync(string path, string contentType, string framing, bool chunked)
    {
        using var tcp = new TcpClient();
        var url = fx.Gateway.BaseUrl;
        await tcp.ConnectAsync(url.Host, url.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST {path} HTTP/1.1\r\nHost: {url.Authority}\r\nContent-Type: {contentType}\r\n{framing}\r\n\r\n"));
        var zeros = new byte[16 * 1024];
        var chunk = chunked ? [.. Encoding.ASCII.GetBytes($"{zeros.Length:x}\r\n"), .. zeros, .. "\r\n"u8] : zeros;
        long sent = 0;
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var sending = Task.Run(async () =>
        {
            try
            {
                while (!deadline.IsCancellationRequested)
                {
                    await stream.WriteAsync(chunk, deadline.Token);
                    Interlocked.Add(ref sent, chunk.Length);
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
            }
        });
        var answer = new StringBuilder();
        var buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, deadline.Token)) > 0)
            {
                answer.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
        }
        var closed = !deadline.IsCancellationRequested;
        await deadline.CancelAsync();
        await sending.WaitAsync(TimeSpan.FromSeconds(10));
        return (answer.ToString(), Interlocked.Read(ref sent), closed);
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("application/xml")]
    [InlineData(null)]
    public async Task Telemetry_in_another_content_type_gets_415(string? contentType)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/metrics") { Content = new ByteArrayContent(Encoding.UTF8.GetBytes("cpu=1")) };
        request.Content.Headers.ContentType = contentType is null ? null : MediaTypeHeaderValue.Parse(contentType);
        using var response = await Client.SendAsync(request);
        var (_, message) = await Http.AssertErrorAsync(response, 415, "invalid_request_error");
        Assert.Contains("application/x-protobuf", message);
    }

    [Theory]
    [InlineData("GET", "/v1/metrics")]
    [InlineData("PUT", "/v1/logs")]
    [InlineData("GET", "/v1/traces")]
    [InlineData("POST", "/v1/profiles")]
    [InlineData("POST", "/managed/settings")]
    public async Task Other_methods_and_signals_are_not_found_and_never_reach_upstream(string method, string path)
    {
        var marker = Guid.NewGuid().ToString("N");
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token(TestSecrets.DeviceId(), "claude-*"));
        request.Headers.TryAddWithoutValidation("x-test-marker", marker);
        using var response = await Client.SendAsync(request);
        await Http.AssertErrorAsync(response, 404, "not_found_error");
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    [Fact]
    public async Task Managed_settings_are_not_found_for_a_valid_token_and_never_go_upstream()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        using var response = await Client.SendAsync(Http.Get("/managed/settings", token, ("x-test-marker", marker)));
        var (_, message) = await Http.AssertErrorAsync(response, 404, "not_found_error");
        Assert.Equal("no managed settings are configured for this gateway", message);
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("garbage")]
    [InlineData("forged")]
    [InlineData("alg-none")]
    [InlineData("expired")]
    public async Task Managed_settings_need_a_valid_token(string? kind)
    {
        var token = kind switch
        {
            "garbage" => "not-a-jwt",
            "forged" => TokenForge.Make(TestSecrets.JwtSecret()),
            "alg-none" => TokenForge.AlgNone(),
            "expired" => TokenForge.Make(fx.JwtSecret, notBefore: DateTime.UtcNow.AddHours(-3), expires: DateTime.UtcNow.AddHours(-1)),
            _ => null,
        };
        using var response = await Client.SendAsync(Http.Get("/managed/settings", token));
        var (_, message) = await Http.AssertErrorAsync(response, 401, "authentication_error");
        Assert.Contains(kind == "expired" ? "expired" : kind is null ? "missing" : "invalid", message);
    }

    [Fact]
    public async Task Managed_settings_end_the_session_of_a_revoked_device()
    {
        var device = TestSecrets.DeviceId();
        var token = await fx.Gateway.BootstrapAsync(device);
        using (var before = await Client.SendAsync(Http.Get("/managed/settings", token)))
        {
            await Http.AssertErrorAsync(before, 404, "not_found_error");
        }
        using var manage = new HttpClient { BaseAddress = fx.Gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        using (var revoke = await manage.PostAsync($"/manage/v1/devices/{device}/revoke", null))
        {
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
        }
        using var after = await Client.SendAsync(Http.Get("/managed/settings", token));
        var (_, message) = await Http.AssertErrorAsync(after, 401, "authentication_error");
        Assert.Contains("revoked", message);
    }
}

/// <summary>What the gateway makes of an upstream list it cannot take at its word.</summary>
public sealed class ModelListTests
{
    private static readonly ClaudeProxy.Gateway.Tokens.ModelAllowlist Everything = new(["*"]);

    [Theory]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("""{"data":{}}""")]
    [InlineData("""{"type":"error","error":{"type":"api_error","message":"x"}}""")]
    public void An_answer_that_is_not_a_list_of_models_is_refused(string upstream)
    {
        var output = new System.Buffers.ArrayBufferWriter<byte>();
        Assert.False(ClaudeProxy.Gateway.Forwarding.ModelList.TryWrite(Encoding.UTF8.GetBytes(upstream), Everything, new(20, null, null), output));
    }

    [Fact]
    public void Entries_without_an_id_are_left_out_and_the_others_pass_as_they_came()
    {
        const string upstream = """
            {"data":[{"type":"model","id":"claude-a","max_tokens":64000,"capabilities":{"batch":{"supported":true}}},
                     {"type":"model","id":7},{"type":"model"},"claude-b",null,
                     {"type":"model","id":"claude-c","display_name":"C \u00e9"}],"has_more":false,"first_id":"claude-a","last_id":"claude-c"}
            """;
        var output = new System.Buffers.ArrayBufferWriter<byte>();
        Assert.True(ClaudeProxy.Gateway.Forwarding.ModelList.TryWrite(Encoding.UTF8.GetBytes(upstream), Everything, new(1, null, null), output));
        using var page = JsonDocument.Parse(output.WrittenMemory);
        var root = page.RootElement;
        Assert.Equal("""{"type":"model","id":"claude-a","max_tokens":64000,"capabilities":{"batch":{"supported":true}}}""", root.GetProperty("data")[0].GetRawText());
        Assert.Equal(1, root.GetProperty("data").GetArrayLength());
        Assert.True(root.GetProperty("has_more").GetBoolean());
        Assert.Equal("claude-a", root.GetProperty("last_id").GetString());
    }
}
