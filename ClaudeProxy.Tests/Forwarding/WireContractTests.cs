using System.Net;
using System.Text;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Forwarding;

/// <summary>What Claude Code and the SDKs rely on: headers, query, body and stream pass as they came; the key is swapped.</summary>
public sealed class WireContractTests(ProxyFixture fx) : IClassFixture<ProxyFixture>
{
    private HttpClient Client => fx.Gateway.Client;

    [Fact]
    public async Task Upstream_sees_the_master_key_and_never_the_wrapper_token()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        using var response = await Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, apiKey: token, ("x-test-marker", marker)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var seen = fx.Simulator.State.Find("x-test-marker", marker)!;
        Assert.Equal(fx.MasterKey, seen.Headers["x-api-key"]);
        Assert.False(seen.Headers.ContainsKey("authorization"));
        Assert.DoesNotContain(seen.Headers, h => h.Value.Contains(token, StringComparison.Ordinal));
        Assert.DoesNotContain(seen.Headers.Keys, k => k.StartsWith("x-forwarded", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task Beta_headers_version_and_query_string_arrive_verbatim()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        const string beta = "claude-code-20250219,interleaved-thinking-2025-05-14,some-future-beta-2027-01-01";
        using var request = Http.Post("/v1/messages?beta=true", Http.SmallMessage, bearer: token, headers: [("x-test-marker", marker), ("anthropic-beta", beta),
            ("x-claude-code-session-id", "session-1"), ("x-app", "cli"), ("user-agent", "claude-cli/2.1.0 (external, cli)")]);
        using var response = await Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var seen = fx.Simulator.State.Find("x-test-marker", marker)!;
        Assert.Equal("/v1/messages?beta=true", seen.PathAndQuery);
        Assert.Equal(beta, seen.Headers["anthropic-beta"]);
        Assert.Equal("2023-06-01", seen.Headers["anthropic-version"]);
        Assert.Equal("session-1", seen.Headers["x-claude-code-session-id"]);
        Assert.Equal("cli", seen.Headers["x-app"]);
        Assert.Equal("claude-cli/2.1.0 (external, cli)", seen.Headers["user-agent"]);
    }

    [Fact]
    public async Task Request_body_arrives_byte_for_byte()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        // Odd spacing, escapes, key order and a large system prompt: anything re-serialised would differ.
        var body = "{ \"system\" : [{\"type\":\"text\",\"text\":\"caf\\u00e9 \\ud83d\\ude00 " + new string('x', 90_000) + "\"}],\n\t\"model\":\"claude-sonnet-4-5\" ,\"max_tokens\": 1.0e3,"
            + "\"messages\":[{\"role\":\"user\",\"content\":\"Hi \u00e9\"}], \"metadata\":{\"user_id\":null} }";
        using var response = await Client.SendAsync(Http.Post("/v1/messages", body, bearer: token, headers: ("x-test-marker", marker)));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Encoding.UTF8.GetBytes(body), fx.Simulator.State.Find("x-test-marker", marker)!.Body);
    }

    [Fact]
    public async Task Chunked_request_body_is_forwarded_whole()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        var bytes = Encoding.UTF8.GetBytes(Http.SmallMessage);
        using var request = Http.Post("/v1/messages", "", bearer: token, headers: ("x-test-marker", marker));
        request.Content = new StreamContent(new UnknownLengthStream(bytes));
        request.Content.Headers.ContentType = new("application/json");
        using var response = await Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(bytes, fx.Simulator.State.Find("x-test-marker", marker)!.Body);
    }

    [Fact]
    public async Task First_stream_event_reaches_the_client_while_upstream_holds_the_next()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var gate = Guid.NewGuid().ToString("N");
        using var request = Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-sim-hold", gate));
        using var response = await Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());

        var first = await Http.ReadEventAsync(reader).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.StartsWith("event: message_start", first);
        Assert.False(fx.Simulator.State.Gate(gate).Task.IsCompleted, "the simulator must still be holding the next event");

        fx.Simulator.State.Release(gate);
        var rest = await reader.ReadToEndAsync();
        Assert.Contains("event: ping", rest);
        Assert.Contains("event: message_delta", rest);
        Assert.EndsWith("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", rest);
    }

    [Fact]
    public async Task Upstream_529_reaches_the_client_unmodified()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var response = await Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-status", "529")));
        Assert.Equal(529, (int)response.StatusCode);
        Assert.Equal("true", response.Headers.GetValues("x-should-retry").Single());
        var requestId = response.Headers.GetValues("request-id").Single();
        Assert.StartsWith("req_sim_", requestId);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal($"{{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}},\"request_id\":\"{requestId}\"}}", body);
    }

    [Fact]
    public async Task Upstream_429_keeps_its_retry_after()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var response = await Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: [("x-sim-status", "429"), ("x-sim-retry-after", "7")]));
        Assert.Equal(429, (int)response.StatusCode);
        Assert.Equal("7", response.Headers.GetValues("retry-after").Single());
        Assert.StartsWith("req_sim_", response.Headers.GetValues("request-id").Single());
    }

    [Fact]
    public async Task Mid_stream_error_event_reaches_the_client()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var response = await Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-sim-error-after", "3")));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.EndsWith("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", text);
    }

    [Fact]
    public async Task Legacy_complete_passes_through_as_json_and_as_stream()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var json = await Client.SendAsync(Http.Post("/v1/complete", """{"model":"claude-2.1","prompt":"\n\nHuman: Hi\n\nAssistant:","max_tokens_to_sample":10}""", bearer: token));
        Assert.Contains("\"type\":\"completion\"", await json.Content.ReadAsStringAsync());
        using var sse = await Client.SendAsync(Http.Post("/v1/complete", """{"model":"claude-2.1","prompt":"x","max_tokens_to_sample":10,"stream":true}""", bearer: token));
        Assert.Contains("event: completion", await sse.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("GET", "/v1/files")]
    [InlineData("POST", "/v1/messages/batches")]
    [InlineData("GET", "/v1/organizations/me")]
    [InlineData("DELETE", "/v1/models/claude-opus-4-5")]
    public async Task Unmetered_v1_paths_get_404_and_never_reach_upstream(string method, string path)
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        request.Headers.Authorization = new("Bearer", token);
        request.Headers.Add("x-test-marker", marker);
        using var response = await Client.SendAsync(request);
        await Http.AssertErrorAsync(response, 404, "not_found_error");
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    [Fact]
    public async Task Hello_is_answered_locally()
    {
        var marker = Guid.NewGuid().ToString("N");
        using var head = new HttpRequestMessage(HttpMethod.Head, "/api/hello");
        head.Headers.Add("x-test-marker", marker);
        using var response = await Client.SendAsync(head);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var get = await Client.GetAsync("/api/hello");
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Null(fx.Simulator.State.Find("x-test-marker", marker));
    }

    [Fact]
    public async Task Correlation_id_from_the_client_is_returned()
    {
        using var request = Http.Post("/v1/messages", Http.SmallMessage, headers: ("x-request-id", "my-trace-42"));
        using var response = await Client.SendAsync(request);
        Assert.Equal("my-trace-42", response.Headers.GetValues("x-request-id").Single());
        var (_, _) = await Http.AssertErrorAsync(response, 401, "authentication_error");
        Assert.Equal("my-trace-42", response.Headers.GetValues("request-id").Single());
    }

    [Fact]
    public async Task Client_disconnect_cancels_the_upstream_request()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");
        using (var response = await Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: [("x-test-marker", marker), ("x-sim-hang-after", "2")]),
            HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            await Http.ReadEventAsync(reader).WaitAsync(TimeSpan.FromSeconds(20));
        }
        var seen = fx.Simulator.State.Find("x-test-marker", marker)!;
        Assert.True(await seen.Aborted.Task.WaitAsync(TimeSpan.FromSeconds(20)), "upstream request should have been cancelled");
    }

    /// <summary>A stream without a length, so HttpClient sends the body chunked.</summary>
    private sealed class UnknownLengthStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
    }
}
