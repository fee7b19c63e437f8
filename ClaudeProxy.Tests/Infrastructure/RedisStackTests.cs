using Microsoft.AspNetCore.Builder;
using StackExchange.Redis;

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

    /// <summary>Completes when the event <paramref name="subscribe"/> hooks fires for the interactive connection (not the pub/sub one).</summary>
    protected static Task ConnectionEvent(Action<EventHandler<ConnectionFailedEventArgs>> subscribe)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        subscribe((_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive)
            {
                done.TrySetResult();
            }
        });
        return done.Task;
    }
}
