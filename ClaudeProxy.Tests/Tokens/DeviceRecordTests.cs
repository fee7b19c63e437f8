using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Tokens;

public sealed class DeviceRecordTests(StackFixture fx) : IClassFixture<StackFixture>
{
    [Fact]
    public async Task Bootstrap_creates_then_touches_the_device_record()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => { s["DEFAULT_MODELS"] = "claude-sonnet-*"; s["DEFAULT_SPEND_CAP"] = "25"; s["ORG_ID"] = "acme"; });
        using (var first = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = "rec-1", app_version = "2.0.1", user_id = "alice@acme" }))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }
        var firstSeen = await fx.ScalarAsync<DateTime>(db, "SELECT first_seen FROM devices WHERE device_id = 'rec-1'");
        using (var second = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = "rec-1", app_version = "2.0.2" }))
        {
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        }
        await using var connection = fx.Connect(db);
        await using var command = new Npgsql.NpgsqlCommand("SELECT app_version, user_id, org_id, status, models, rate_limit, spend_cap, policy_version, first_seen, last_seen FROM devices WHERE device_id = 'rec-1'", connection);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal("2.0.2", reader.GetString(0));
        Assert.Equal("alice@acme", reader.GetString(1));
        Assert.Equal("acme", reader.GetString(2));
        Assert.Equal("active", reader.GetString(3));
        Assert.Equal(["claude-sonnet-*"], reader.GetFieldValue<string[]>(4));
        Assert.Equal(100000, reader.GetInt32(5));
        Assert.Equal(25m, reader.GetDecimal(6));
        Assert.Equal(1, reader.GetInt32(7));
        Assert.Equal(firstSeen, reader.GetDateTime(8));
        Assert.True(reader.GetDateTime(9) >= firstSeen);
        Assert.Equal(1L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices"));
    }

    [Fact]
    public async Task A_revoked_device_cannot_bootstrap_or_refresh_and_stays_revoked()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var token = await gateway.BootstrapAsync("rev-1");
        await fx.ExecuteAsync(db, "UPDATE devices SET status = 'revoked' WHERE device_id = 'rev-1'");

        for (var i = 0; i < 2; i++)
        {
            using var again = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = "rev-1" });
            var (_, message) = await Http.AssertErrorAsync(again, 403, "permission_error");
            Assert.Contains("revoked", message);
        }
        using var refresh = await gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: token));
        await Http.AssertErrorAsync(refresh, 403, "permission_error");
        Assert.Equal("revoked", await fx.ScalarAsync<string>(db, "SELECT status FROM devices WHERE device_id = 'rev-1'"));
    }

    [Fact]
    public async Task Approval_mode_keeps_new_devices_pending_until_an_operator_approves()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s => s["BOOTSTRAP_MODE"] = "approval");
        using (var pending = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = "new-1" }))
        {
            var (_, message) = await Http.AssertErrorAsync(pending, 401, "authentication_error");
            Assert.Contains("approval", message);
        }
        Assert.Equal("pending", await fx.ScalarAsync<string>(db, "SELECT status FROM devices WHERE device_id = 'new-1'"));
        await fx.ExecuteAsync(db, "UPDATE devices SET status = 'active' WHERE device_id = 'new-1'");
        using var approved = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = "new-1" });
        Assert.Equal(HttpStatusCode.OK, approved.StatusCode);
    }

    [Fact]
    public async Task Closed_mode_admits_only_known_devices_and_records_nothing_for_strangers()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var open = await fx.GatewayAsync(db);
        await open.BootstrapAsync("known-1");
        var closed = await fx.GatewayAsync(db, s => s["BOOTSTRAP_MODE"] = "closed");
        using (var stranger = await closed.Client.PostAsJsonAsync("/bootstrap", new { device_id = "stranger-1" }))
        {
            await Http.AssertErrorAsync(stranger, 403, "permission_error");
        }
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices WHERE device_id = 'stranger-1'"));
        using var known = await closed.Client.PostAsJsonAsync("/bootstrap", new { device_id = "known-1" });
        Assert.Equal(HttpStatusCode.OK, known.StatusCode);
    }

    [Fact]
    public async Task Bad_bootstrap_input_writes_no_device_record()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        using var bad = await gateway.Client.SendAsync(Http.Post("/bootstrap", """{"device_id":"bad id!"}"""));
        await Http.AssertErrorAsync(bad, 400, "invalid_request_error");
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices"));
    }

    [Fact]
    public async Task Replicas_starting_together_migrate_once_without_colliding()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateways = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => fx.GatewayAsync(db)));
        Assert.Equal(MigrationCount, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM \"__EFMigrationsHistory\""));
        foreach (var gateway in gateways)
        {
            using var ready = await gateway.Client.GetAsync("/readyz");
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            using var json = JsonDocument.Parse(await ready.Content.ReadAsStringAsync());
            Assert.Equal("Healthy", json.RootElement.GetProperty("checks").GetProperty("claudeproxydb").GetProperty("status").GetString());
        }
    }

    [Fact]
    public async Task The_migrate_command_applies_migrations_and_exits()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var (exitCode, stdout, stderr) = await GatewayProcess.RunAsync(new Dictionary<string, string>
        {
            ["ANTHROPIC_API_KEY"] = TestSecrets.MasterKey(),
            ["JWT_SECRET"] = TestSecrets.JwtSecret(),
            ["DATABASE_URL"] = fx.Postgres.Url(db),
            ["LOG_LEVEL"] = "warn",
        }, "migrate");
        Assert.True(exitCode == 0, stderr + stdout);
        Assert.Contains("up to date", stdout);
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM usage_events"));
        Assert.Equal(MigrationCount, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM \"__EFMigrationsHistory\""));
    }

    /// <summary>Every migration the gateway ships, each applied exactly once.</summary>
    private static long MigrationCount
    {
        get
        {
            using var context = new ClaudeProxy.Gateway.Data.DesignTimeFactory().CreateDbContext([]);
            return Microsoft.EntityFrameworkCore.RelationalDatabaseFacadeExtensions.GetMigrations(context.Database).LongCount();
        }
    }
}
