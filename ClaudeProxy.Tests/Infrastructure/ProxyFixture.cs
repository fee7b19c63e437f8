namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>A simulator and one gateway in front of it, shared by the tests of a class.</summary>
public class ProxyFixture : IAsyncLifetime, IAsyncDisposable
{
    public string MasterKey { get; } = TestSecrets.MasterKey();
    public string JwtSecret { get; } = TestSecrets.JwtSecret();
    public SimulatorHost Simulator { get; private set; } = null!;
    public GatewayHost Gateway { get; private set; } = null!;

    protected virtual void Configure(Dictionary<string, string?> settings) { }

    public async Task InitializeAsync()
    {
        Simulator = await SimulatorHost.StartAsync(MasterKey);
        var settings = GatewayHost.DefaultSettings(Simulator.BaseUrl, MasterKey, JwtSecret);
        Configure(settings);
        Gateway = await GatewayHost.StartAsync(settings);
    }

    private bool _disposed;

    public async Task DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        await Gateway.DisposeAsync();
        await Simulator.DisposeAsync();
    }

    async ValueTask IAsyncDisposable.DisposeAsync() => await DisposeAsync();
}
