using ClaudeProxy.Gateway.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// Prices, and where usage goes: with Postgres the usage writer (binary COPY, a disk spool while Postgres is down);
/// without it the latest events in memory, and the gateway says so in /readyz.
/// </summary>
public static class UsageExtensions
{
    public static IHostApplicationBuilder AddUsage(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton(PriceBook.Load(builder.Configuration));
        builder.Services.TryAddSingleton<GatewayMetrics>();
        builder.Services.AddSingleton<InMemoryUsageLog>();

        // Every background service reports here; /readyz shows each one's state.
        builder.Services.TryAddSingleton<BackgroundHealth>();
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration("background",
            sp => new DelegateHealthCheck(sp.GetRequiredService<BackgroundHealth>().Check), HealthStatus.Degraded, ["ready"]));

        if (builder.AddBackingServices().Postgres)
        {
            var connectionString = builder.Configuration.NpgsqlConnectionString()!;
            // Made when the writer starts, not at build: the migrate command never needs a spool folder.
            builder.Services.AddSingleton(_ => UsageSpool.Locate(builder.Configuration, connectionString));
            builder.Services.AddSingleton<UsageSpool>();
            builder.Services.AddSingleton<UsageWriter>();
            builder.Services.AddSingleton<IUsageSink>(sp => sp.GetRequiredService<UsageWriter>());
            builder.Services.AddSingleton<IDeviceUsageHistory, PostgresDeviceUsageHistory>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<UsageWriter>());
            builder.Services.AddSingleton<RefusalRollupWriter>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<RefusalRollupWriter>());
            builder.Services.AddHealthChecks().Add(new HealthCheckRegistration("usage-writer",
                sp => new DelegateHealthCheck(sp.GetRequiredService<UsageWriter>().Check), HealthStatus.Degraded, ["ready"]));
        }
        else
        {
            builder.Services.AddSingleton<IUsageSink>(sp => sp.GetRequiredService<InMemoryUsageLog>());
            builder.Services.AddSingleton<IDeviceUsageHistory, InMemoryDeviceUsageHistory>();
            builder.Services.AddHealthChecks().AddCheck("usage", () => HealthCheckResult.Healthy(
                $"no Postgres configured: usage is kept in memory (the latest {InMemoryUsageLog.Capacity} events) and lost on restart"), ["ready"]);
        }
        return builder;
    }
}
