using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Configuration;

/// <summary>The master key and the JWT secret appear in no response and no log line, whatever happens.</summary>
public sealed class SecretTests
{
    [Fact]
    public async Task Secrets_never_appear_in_responses_or_logs()
    {
        await using var fx = new ProxyFixture();
        await fx.InitializeAsync();
        try
        {
            var client = fx.Gateway.Client;
            var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
            var requests = new List<HttpRequestMessage>
            {
                Http.Post("/v1/messages", Http.SmallMessage, bearer: token),
                Http.Post("/v1/messages", Http.StreamMessage, bearer: token),
                Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-status", "500")),
                Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-status", "401")),
                Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-sim-reset-after", "2")),
                Http.Post("/v1/messages", "{not json", bearer: token),
                Http.Post("/v1/messages", Http.SmallMessage, bearer: "garbage"),
                Http.Post("/v1/messages", Http.SmallMessage, bearer: TokenForge.Make(fx.JwtSecret + "x")),
                Http.Post("/refresh", "", bearer: token),
                Http.Post("/bootstrap", "{\"device_id\":\"bad id\"}"),
                Http.Get("/v1/models", bearer: token),
                Http.Get("/v1/nope", bearer: token),
                Http.Get("/readyz"),
                Http.Get("/healthz"),
            };
            var seen = new List<string>();
            foreach (var request in requests)
            {
                try
                {
                    using var response = await client.SendAsync(request);
                    seen.Add(response.ToString() + string.Join(" ", response.Headers.Select(h => h.Key + ":" + string.Join(",", h.Value))) + await response.Content.ReadAsStringAsync());
                }
                catch (HttpRequestException)
                {
                    // The reset stream ends the response abruptly: what matters is what was said before.
                }
                finally
                {
                    request.Dispose();
                }
            }
            Assert.NotEmpty(fx.Gateway.Logs.Lines);
            foreach (var text in seen.Concat(fx.Gateway.Logs.Lines))
            {
                Assert.DoesNotContain(fx.MasterKey, text, StringComparison.Ordinal);
                Assert.DoesNotContain(fx.JwtSecret, text, StringComparison.Ordinal);
                Assert.DoesNotContain(token, text, StringComparison.Ordinal);
            }
        }
        finally
        {
            await fx.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_unreachable_upstream_gives_502_in_anthropic_shape_without_secrets()
    {
        // Below the ephemeral range: no server of another test binding port 0 can take it meanwhile.
        var port = RedisServer.FreePort();

        var master = TestSecrets.MasterKey();
        var secret = TestSecrets.JwtSecret();
        await using var gateway = await GatewayHost.StartAsync(GatewayHost.DefaultSettings(new Uri($"http://127.0.0.1:{port}"), master, secret));
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        var (_, message) = await Http.AssertErrorAsync(response, 502, "api_error");
        Assert.DoesNotContain(master, message);
        Assert.All(gateway.Logs.Lines, l => Assert.DoesNotContain(master, l, StringComparison.Ordinal));
    }
}
