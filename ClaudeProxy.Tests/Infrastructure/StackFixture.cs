using ClaudeProxy.Gateway.Usage;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>Real Redis and PostgreSQL, the simulator, and gateways made on demand; each gateway set gets a fresh database.</summary>
public class StackFixture : IAsyncLifetime
{
    public string MasterKey { get; } = TestSecrets.MasterKey();
    public string JwtSecret { get; } = TestSecrets.JwtSecret();
    public RedisServer Redis { get; private set; } = null!;
    public PostgresServer Postgres { get; private set; } = null!;
    public SimulatorHost Simulator { get; private set; } = null!;
    private readonly List<GatewayHost> _gateways = [];

    public async Task InitializeAsync()
    {
        var redis = RedisServer.StartAsync();
        var postgres = PostgresServer.StartAsync();
        Simulator = await SimulatorHost.StartAsync(MasterKey);
        Redis = await redis;
        Postgres = await postgres;
    }

    public async Task<GatewayHost> GatewayAsync(string database, Action<Dictionary<string, string?>>? configure = null)
    {
        var settings = GatewayHost.DefaultSettings(Simulator.BaseUrl, MasterKey, JwtSecret);
        settings["REDIS_URL"] = Redis.Url;
        settings["DATABASE_URL"] = Postgres.Url(database);
        settings["USAGE_SPOOL_DIR"] = Path.Combine(Path.GetTempPath(), "claudeproxy-test-spool-" + database);
        settings["RATE_LIMIT_MAX"] = "100000";
        settings["USAGE_FLUSH_MS"] = "50";
        configure?.Invoke(settings);
        var gateway = await GatewayHost.StartAsync(settings);
        lock (_gateways)
        {
            _gateways.Add(gateway);
        }
        return gateway;
    }

    public NpgsqlConnection Connect(string database)
    {
        var connection = new NpgsqlConnection(Postgres.ConnectionString(database));
        connection.Open();
        return connection;
    }

    public async Task<T> ScalarAsync<T>(string database, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = Connect(database);
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public async Task ExecuteAsync(string database, string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = Connect(database);
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Waits until the gateway's writer has stored at least <paramref name="count"/> events.</summary>
    public static Task StoredAsync(GatewayHost gateway, long count) =>
        gateway.Services.GetRequiredService<UsageWriter>().WaitForStoredAsync(count).WaitAsync(TimeSpan.FromSeconds(60));

    public async Task DisposeAsync()
    {
        foreach (var gateway in _gateways)
        {
            await gateway.DisposeAsync();
        }
        await Simulator.DisposeAsync();
        await Redis.DisposeAsync();
        await Postgres.DisposeAsync();
    }
}
