using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ClaudeProxy.Gateway.Usage;

public static class UsageExtensions
{
    public static IHostApplicationBuilder AddUsage(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton(PriceBook.Load(builder.Configuration));
        builder.Services.TryAddSingleton<GatewayMetrics>();
        builder.Services.AddSingleton<InMemoryUsageLog>();
        builder.Services.TryAddSingleton<IUsageSink>(sp => sp.GetRequiredService<InMemoryUsageLog>());

        // Every background service reports here; /readyz shows each one's state.
        builder.Services.TryAddSingleton<BackgroundHealth>();
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration("background",
            sp => new DelegateHealthCheck(sp.GetRequiredService<BackgroundHealth>().Check), HealthStatus.Degraded, ["ready"]));

        if (builder.Configuration.NpgsqlConnectionString(DataExtensions.ConnectionName) is { } connectionString)
        {
            // Made when the writer starts, not at build: the migrate command never needs a spool folder.
            builder.Services.AddSingleton(_ => UsageSpool.Locate(builder.Configuration, connectionString));
            builder.Services.AddHealthChecks().Add(new HealthCheckRegistration("usage-writer",
                sp => new DelegateHealthCheck(sp.GetRequiredService<UsageWriter>().Check), HealthStatus.Degraded, ["ready"]));
        }
        return builder;
    }
}
