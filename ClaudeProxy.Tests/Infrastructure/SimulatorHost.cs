using ClaudeProxy.AnthropicSimulator;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>The Anthropic simulator on a free loopback port, in this process.</summary>
public sealed class SimulatorHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SimulatorHost(WebApplication app, string apiKey)
    {
        _app = app;
        ApiKey = apiKey;
        State = app.Services.GetRequiredService<SimulatorState>();
        BaseUrl = new Uri(app.Urls.First());
    }

    public string ApiKey { get; }
    public Uri BaseUrl { get; }
    public SimulatorState State { get; }

    public static async Task<SimulatorHost> StartAsync(string apiKey)
    {
        var app = SimulatorApp.Build(["--api-key", apiKey], b => b.WebHost.UseUrls("http://127.0.0.1:0"));
        await app.StartAsync();
        return new SimulatorHost(app, apiKey);
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(cts.Token);
        await _app.DisposeAsync();
    }
}
