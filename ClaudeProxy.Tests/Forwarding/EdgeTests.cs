using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using ClaudeProxy.AnthropicSimulator;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Forwarding;

/// <summary>
/// What the gateway believes about the network in front of it (forwarded headers only from TRUSTED_PROXIES), what it
/// passes on about that network and about the company's Anthropic organisation (nothing), and slow bodies.
/// </summary>
public sealed class EdgeTests
{
    private static async Task<(SimulatorHost Simulator, GatewayHost Gateway)> StartAsync(Action<Dictionary<string, string?>> configure)
    {
        var masterKey = TestSecrets.MasterKey();
        var simulator = await SimulatorHost.StartAsync(masterKey);
        var settings = GatewayHost.DefaultSettings(simulator.BaseUrl, masterKey, TestSecrets.JwtSecret());
        configure(settings);
        return (simulator, await GatewayHost.StartAsync(settings));
    }

    private static HttpRequestMessage Bootstrap(string? forwardedFor, params (string Name, string Value)[] headers)
    {
        var request = Http.Post("/bootstrap", JsonSerializer.Serialize(new { device_id = TestSecrets.DeviceId() }), headers: headers);
        if (forwardedFor is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor);
        }
        return request;
    }

    [Fact]
    public async Task Behind_a_trusted_proxy_each_client_address_has_its_own_bootstrap_budget_and_the_public_url_is_answered()
    {
        var (simulator, gateway) = await StartAsync(s => { s["TRUSTED_PROXIES"] = "127.0.0.0/8, ::1"; s["BOOTSTRAP_RATE_LIMIT"] = "2"; });
        await using var _ = simulator;
        await using var __ = gateway;

        for (var i = 0; i < 2; i++)
        {
            using var ok = await gateway.Client.SendAsync(Bootstrap("203.0.113.7"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using (var third = await gateway.Client.SendAsync(Bootstrap("203.0.113.7")))
        {
            await Http.AssertErrorAsync(third, 429, "rate_limit_error");
        }
        // Another client behind the same ingress is not held back by the first one's budget.
        using (var other = await gateway.Client.SendAsync(Bootstrap("198.51.100.20", ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "claude.example.com"))))
        {
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
            var body = await other.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Equal("https://claude.example.com", body.GetProperty("proxy_base_url").GetString());
        }
    }

    [Fact]
    public async Task Without_trusted_proxies_forwarded_headers_are_ignored_so_a_client_cannot_pick_its_own_address()
    {
        var (simulator, gateway) = await StartAsync(s => s["BOOTSTRAP_RATE_LIMIT"] = "2");
        await using var _ = simulator;
        await using var __ = gateway;

        for (var i = 0; i < 2; i++)
        {
            using var ok = await gateway.Client.SendAsync(Bootstrap($"203.0.113.{i + 1}"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using var refused = await gateway.Client.SendAsync(Bootstrap("203.0.113.99", ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example")));
        await Http.AssertErrorAsync(refused, 429, "rate_limit_error");
    }

    [Fact]
    public async Task Forwarded_headers_from_an_address_outside_trusted_proxies_are_ignored()
    {
        var (simulator, gateway) = await StartAsync(s => { s["TRUSTED_PROXIES"] = "10.0.0.0/8"; s["BOOTSTRAP_RATE_LIMIT"] = "1"; });
        await using var _ = simulator;
        await using var __ = gateway;

        using (var first = await gateway.Client.SendAsync(Bootstrap("203.0.113.1", ("X-Forwarded-Proto", "https"))))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            var body = await first.Content.ReadFromJsonAsync<JsonElement>();
            Assert.StartsWith("http://127.0.0.1:", body.GetProperty("proxy_base_url").GetString());
        }
        using var second = await gateway.Client.SendAsync(Bootstrap("203.0.113.2"));
        await Http.AssertErrorAsync(second, 429, "rate_limit_error");
    }

    [Fact]
    public async Task Anthropic_sees_nothing_of_the_clients_network_and_devices_see_nothing_of_the_companys_organisation()
    {
        var (simulator, gateway) = await StartAsync(s => s["TRUSTED_PROXIES"] = "127.0.0.0/8");
        await using var _ = simulator;
        await using var __ = gateway;
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var marker = Guid.NewGuid().ToString("N");

        foreach (var body in new[] { Http.SmallMessage, Http.StreamMessage })
        {
            using var request = Http.Post("/v1/messages", body, bearer: token,
                headers: [("X-Forwarded-For", "203.0.113.9, 10.1.2.3"), ("X-Forwarded-Proto", "https"), ("X-Real-IP", "203.0.113.9"), ("x-test-marker", marker)]);
            using var response = await gateway.Client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.False(response.Headers.Contains("anthropic-organization-id"), "the company's organisation id reached a device");
            Assert.False(response.Headers.Contains("Set-Cookie"), "an upstream cookie reached a device");
            Assert.True(response.Headers.Contains("request-id"));
            await response.Content.ReadAsStringAsync();
        }

        var seen = simulator.State.Requests.Where(r => r.Headers.TryGetValue("x-test-marker", out var m) && m == marker).ToList();
        Assert.Equal(2, seen.Count);
        foreach (var upstream in seen)
        {
            foreach (var name in new[] { "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-original-for", "x-original-proto", "x-real-ip", "forwarded" })
            {
                Assert.False(upstream.Headers.ContainsKey(name), $"{name} reached Anthropic");
            }
        }

        // The simulator does send both, as the real API does: the gateway is what removes them.
        using var direct = new HttpClient { BaseAddress = simulator.BaseUrl };
        using var directRequest = Http.Post("/v1/messages", Http.SmallMessage, apiKey: simulator.ApiKey);
        using var directResponse = await direct.SendAsync(directRequest);
        Assert.Equal(SimulatorApi.SimulatorOrganizationId, directResponse.Headers.GetValues("anthropic-organization-id").Single());
    }

    /// <summary>
    /// 500 bytes a second is above Kestrel's own floor (240) but far below what any real client sends: a 2 MB body at
    /// that rate would hold a connection and its buffer for over an hour. The gateway's floor (4 KB/s after 5 s) cuts it.
    /// </summary>
    [Fact]
    public async Task A_body_that_trickles_in_below_the_minimum_rate_is_cut_and_nothing_is_forwarded()
    {
        var (simulator, gateway) = await StartAsync(_ => { });
        await using var _ = simulator;
        await using var __ = gateway;
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var before = simulator.State.ReceivedCount;

        using var tcp = new TcpClient();
        await tcp.ConnectAsync(gateway.BaseUrl.Host, gateway.BaseUrl.Port);
        var stream = tcp.GetStream();
        var head = $"POST /v1/messages HTTP/1.1\r\nHost: {gateway.BaseUrl.Authority}\r\nAuthorization: Bearer {token}\r\n" +
                   "anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"model\":\"claude-sonnet-4-5\",\"pad\":\"";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(40));
        var trickle = Task.Run(async () =>
        {
            var chunk = Encoding.ASCII.GetBytes(new string('x', 50));
            try
            {
                while (!deadline.IsCancellationRequested)
                {
                    await stream.WriteAsync(chunk, deadline.Token);
                    await Task.Delay(100, deadline.Token); // pacing the client at 500 B/s, not waiting for the server
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
            }
        });

        var buffer = new byte[4096];
        var answer = new StringBuilder();
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, deadline.Token)) > 0)
            {
                answer.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
        }
        catch (IOException)
        {
            // A reset is an answer too: the connection was cut.
        }
        catch (OperationCanceledException)
        {
        }
        var cut = !deadline.IsCancellationRequested;
        await deadline.CancelAsync();
        await trickle.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(cut, "a body trickling in at 500 B/s was never cut");
        if (answer.Length > 0)
        {
            Assert.StartsWith("HTTP/1.1 408", answer.ToString());
        }
        Assert.Equal(before, simulator.State.ReceivedCount);
    }
}
