using System.Diagnostics;
using System.Net;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Data;

/// <summary>
/// <c>/readyz</c> follows the database schema: a gateway whose migrations have not run yet (MIGRATE_ON_START=false,
/// before the migrate Job) is not ready, and becomes ready once they have.
/// </summary>
public sealed class SchemaReadinessTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static async Task<(HttpStatusCode Status, string? Schema, string? Description)> ReadyAsync(GatewayHost gateway)
    {
        using var client = new HttpClient { BaseAddress = gateway.ManagementUrl, Timeout = TimeSpan.FromSeconds(15) };
        using var response = await client.GetAsync("/readyz");
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("checks").TryGetProperty("schema", out var schema)
            ? (response.StatusCode, schema.GetProperty("status").GetString(), schema.GetProperty("description").GetString())
            : (response.StatusCode, null, null);
    }

    [Fact]
    public async Task A_gateway_on_an_unmigrated_database_is_not_ready_until_migrate_has_run()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["MIGRATE_ON_START"] = "false");

        var (status, schema, description) = await ReadyAsync(gateway);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("Unhealthy", schema);
        Assert.Matches(@"^database schema is behind this build: \d+ migrations? pending \(run migrate\)$", description);
        // Liveness is not readiness: the process is fine, it must not be restarted for this.
        using (var live = await gateway.Client.GetAsync("/healthz"))
        {
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }

        var migrate = await GatewayProcess.RunAsync(new Dictionary<string, string> { ["DATABASE_URL"] = fx.Postgres.Url(db) }, "migrate");
        Assert.True(migrate.ExitCode == 0, migrate.StdErr);

        var clock = Stopwatch.StartNew();
        while ((await ReadyAsync(gateway)).Status != HttpStatusCode.OK)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "/readyz did not turn ready after migrate");
            await Task.Delay(200);
        }
        (status, schema, description) = await ReadyAsync(gateway);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("Healthy", schema);
        Assert.Equal("database schema matches this build", description);
    }

    [Fact]
    public async Task A_gateway_on_a_migrated_database_is_ready_at_once()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);

        var (status, schema, description) = await ReadyAsync(gateway);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("Healthy", schema);
        Assert.Equal("database schema matches this build", description);
    }

    [Fact]
    public async Task A_database_migrated_by_a_newer_build_is_degraded_and_still_served()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var migrate = await GatewayProcess.RunAsync(new Dictionary<string, string> { ["DATABASE_URL"] = fx.Postgres.Url(db) }, "migrate");
        Assert.True(migrate.ExitCode == 0, migrate.StdErr);
        await fx.ExecuteAsync(db, "INSERT INTO \"__EFMigrationsHistory\" (\"MigrationId\", \"ProductVersion\") VALUES ('29991231000000_FromTheFuture', '10.0.0')");
        var gateway = await fx.GatewayAsync(db, s => s["MIGRATE_ON_START"] = "false");

        var (status, schema, description) = await ReadyAsync(gateway);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("Degraded", schema);
        Assert.Contains("ahead of this build", description);
        Assert.Contains("29991231000000_FromTheFuture", description);
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId("schema"));
        using var answer = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }

    [Fact]
    public async Task A_gateway_that_cannot_reach_postgres_says_it_cannot_check_the_schema_and_stays_ready()
    {
        // Nothing listens there: Postgres is down, and the gateway serves on as it always has.
        var gateway = await fx.GatewayAsync("nowhere", s =>
        {
            s["DATABASE_URL"] = $"postgres://postgres@127.0.0.1:{RedisServer.FreePort()}/nowhere";
            s["MIGRATE_ON_START"] = "false";
        });

        var clock = Stopwatch.StartNew();
        var (status, schema, description) = await ReadyAsync(gateway);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("Degraded", schema);
        Assert.StartsWith("cannot check the schema", description);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"/readyz took {clock.Elapsed.TotalSeconds:0.0} s");
    }
}
