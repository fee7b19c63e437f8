using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.AnthropicSimulator;

/// <summary>Builds the simulator: used by its own Program and hosted in-process by the tests and the bench.</summary>
public static class SimulatorApp
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton(new SimulatorOptions
        {
            ApiKey = builder.Configuration["api-key"] ?? builder.Configuration["SIMULATOR_API_KEY"],
            RecordRequests = !string.Equals(builder.Configuration["record"], "false", StringComparison.OrdinalIgnoreCase),
        });
        builder.Services.AddSingleton<SimulatorState>();
        configure?.Invoke(builder);

        var app = builder.Build();
        app.MapSimulatorApi();
        return app;
    }
}

public sealed class SimulatorOptions
{
    /// <summary>The x-api-key the simulator accepts; null accepts any non-empty key.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Keep what each request carried, for tests to inspect. The bench turns it off.</summary>
    public bool RecordRequests { get; set; } = true;
}
