using Microsoft.AspNetCore.Builder;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// For tests that stop, kill or freeze redis-server: each test gets its own redis-server and simulator, and the
/// gateways it starts point at them.
/// </summary>
public abstract class RedisStackTests : IAsyncLifetime
{
    private readonly List<GatewayHost> _gateways = [];
    protected string MasterKey { get; } = TestSecrets.MasterKey();
    protected string JwtSecret { get; } = TestSecrets.JwtSecret();
    protected RedisServer Redis { get; private set; } = null!;
    protected SimulatorHost Simulator { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Redis = await RedisServer.StartAsync();
        Simulator = await SimulatorHost.StartAsync(MasterKey);
    }

    public async Task DisposeAsync()
    {
        foreach (var gateway in _gateways)
        {
            await gateway.DisposeAsync();
        }
        await Simulator.DisposeAsync();
        await Redis.DisposeAsync();
    }

    /// <summary>Starts a gateway on this test's Redis and simulator; it is disposed with the test.</summary>
    protected async Task<GatewayHost> StartGatewayAsync(Action<Dictionary<string, string?>>? configure = null, Action<WebApplicationBuilder>? build = null)
    {
        var settings = GatewayHost.DefaultSettings(Simulator.BaseUrl, MasterKey, JwtSecret);
        settings["REDIS_URL"] = Redis.Url;
        configure?.Invoke(settings);
        var gateway = await GatewayHost.StartAsync(settings, build);
        _gateways.Add(gateway);
        return gateway;
    }
}
