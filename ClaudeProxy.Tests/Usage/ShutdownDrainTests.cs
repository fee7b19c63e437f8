using System.Net;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Usage;

/// <summary>An orchestrator stops a gateway with SIGTERM: every usage event it had accepted is stored before it exits.</summary>
public sealed class ShutdownDrainTests(StackFixture fx) : IClassFixture<StackFixture>
{
    [Fact]
    public async Task A_gateway_stopped_with_sigterm_stores_every_event_before_it_exits()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string>
        {
            ["ANTHROPIC_API_KEY"] = fx.MasterKey,
            ["ANTHROPIC_BASE_URL"] = fx.Simulator.BaseUrl.ToString(),
            ["JWT_SECRET"] = fx.JwtSecret,
            ["REDIS_URL"] = fx.Redis.Url,
            ["DATABASE_URL"] = fx.Postgres.Url(db),
            ["USAGE_SPOOL_DIR"] = Path.Combine(Path.GetTempPath(), "claudeproxy-test-spool-" + db),
            // The longest flush interval: the last answers' events are still waiting in memory when SIGTERM comes.
            ["USAGE_FLUSH_MS"] = "1000",
            ["RATE_LIMIT_MAX"] = "100000",
            ["LOG_LEVEL"] = "warn",
        }, "drain");
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId("drain"), claims: new Dictionary<string, object> { ["rate_limit"] = 100_000 });
        var tags = Enumerable.Range(0, 200).Select(i => $"drain-{i}-{Guid.NewGuid():N}").ToList();
        using var gate = new SemaphoreSlim(8);
        await Task.WhenAll(tags.Select(async (tag, i) =>
        {
            await gate.WaitAsync();
            try
            {
                using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", i % 2 == 0 ? Http.StreamMessage : Http.SmallMessage,
                    bearer: token, headers: ("x-request-id", tag)));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                await response.Content.ReadAsStringAsync();
            }
            finally
            {
                gate.Release();
            }
        })).WaitAsync(TimeSpan.FromSeconds(120));

        Assert.Equal(0, await gateway.StopAsync(TimeSpan.FromSeconds(60)));

        var stored = await fx.ScalarAsync<long>(db, "SELECT count(DISTINCT correlation_id) FROM usage_events WHERE correlation_id = ANY(@tags)", ("tags", tags.ToArray()));
        var rows = await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events");
        Assert.Equal(tags.Count, stored);
        Assert.Equal(tags.Count, rows);
    }
}
