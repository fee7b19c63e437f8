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
        return builder;
    }
}
