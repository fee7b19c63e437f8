using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Gateway;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>A real gateway on a free loopback port, in this process, with its log lines captured.</summary>
public sealed class GatewayHost : IAsyncDisposable
{
    private GatewayHost(WebApplication app, LogCapture logs, IReadOnlyDictionary<string, string?> settings)
    {
        App = app;
        Logs = logs;
        Settings = settings;
        var managementPort = settings["MANAGEMENT_PORT"];
        BaseUrl = new Uri(app.Urls.First(u => !u.EndsWith(":" + managementPort, StringComparison.Ordinal)));
        ManagementUrl = new Uri(app.Urls.First(u => u.EndsWith(":" + managementPort, StringComparison.Ordinal)));
        Client = new HttpClient { BaseAddress = BaseUrl, Timeout = TimeSpan.FromSeconds(60) };
    }

    public WebApplication App { get; }
    public LogCapture Logs { get; }
    public IReadOnlyDictionary<string, string?> Settings { get; }
    public Uri BaseUrl { get; }
    public Uri ManagementUrl { get; }
    public HttpClient Client { get; }
    public IServiceProvider Services => App.Services;

    /// <summary>Settings every test gateway starts from; anything the machine's environment says about these is overridden.</summary>
    public static Dictionary<string, string?> DefaultSettings(Uri upstream, string masterKey, string jwtSecret) => new()
    {
        ["ANTHROPIC_API_KEY"] = masterKey,
        ["ANTHROPIC_BASE_URL"] = upstream.ToString(),
        ["JWT_SECRET"] = jwtSecret,
        ["HOST"] = "127.0.0.1",
        ["PORT"] = "0",
        ["MANAGEMENT_PORT"] = RedisServer.FreePort().ToString(),
        ["LOG_LEVEL"] = "debug",
        ["REDIS_URL"] = "",
        ["ConnectionStrings:redis"] = "",
        ["DATABASE_URL"] = "",
        ["ConnectionStrings:claudeproxydb"] = "",
        ["PROXY_BASE_URL"] = "",
        ["CORS_ORIGINS"] = "",
        ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "",
    };

    public static async Task<GatewayHost> StartAsync(IReadOnlyDictionary<string, string?> settings, Action<WebApplicationBuilder>? configure = null)
    {
        for (var attempt = 1; ; attempt++)
        {
            var logs = new LogCapture();
            var current = settings;
            var app = GatewayApplication.Build([], builder =>
            {
                builder.Configuration.AddInMemoryCollection(current);
                builder.Logging.AddProvider(logs);
                configure?.Invoke(builder);
            });
            try
            {
                await app.StartAsync();
                return new GatewayHost(app, logs, settings);
            }
            catch (IOException e) when (attempt < 5 && e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
            {
                // The management port was found free, then taken by someone else before Kestrel bound it.
                using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await app.StopAsync(stopping.Token);
                await app.DisposeAsync();
                settings = new Dictionary<string, string?>(settings) { ["MANAGEMENT_PORT"] = RedisServer.FreePort().ToString() };
            }
        }
    }

    public async Task<string> BootstrapAsync(string deviceId)
    {
        using var response = await Client.PostAsJsonAsync("/bootstrap", new { device_id = deviceId, app_version = "test" });
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("wrapper_token").GetString()!;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await App.StopAsync(cts.Token);
        await App.DisposeAsync();
    }
}
