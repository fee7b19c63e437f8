using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

public static class LimitsExtensions
{
    public static IHostApplicationBuilder AddLimits(this IHostApplicationBuilder builder)
    {
        var options = LimitOptions.Load(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(BreakerOptions.Load(builder.Configuration));
        builder.Services.AddSingleton<InMemoryAdmissionStore>();
        builder.Services.AddSingleton<SettlementQueueSize>();
        builder.Services.AddSingleton<LimitMetrics>();
        builder.Services.TryAddSingleton<ISpendHistory, NoSpendHistory>();

        // Degraded, not unhealthy, in open mode: the instance still serves, with in-process limits.
        var redis = builder.AddRedisIfConfigured("redis", options.FailureMode == RedisFailureMode.Open ? HealthStatus.Degraded : HealthStatus.Unhealthy);
        if (redis)
        {
            builder.Services.AddSingleton(sp => new RedisAdmissionStore(sp.GetRequiredService<IConnectionMultiplexer>()));
            builder.Services.AddSingleton<SettlementRetries>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<SettlementRetries>());
        }
        else
        {
            builder.Services.AddHealthChecks().AddCheck("limits", () =>
                HealthCheckResult.Healthy("no Redis configured: limits are kept in this process (one instance)"), ["ready"]);
        }
        // Standing and live instances are registered later, by the concerns that own them; they are optional here.
        builder.Services.AddSingleton(sp => new AdmissionService(
            sp.GetRequiredService<InMemoryAdmissionStore>(), options, sp.GetRequiredService<ISpendHistory>(), sp.GetRequiredService<GatewayMetrics>(),
            sp.GetRequiredService<ILogger<AdmissionService>>(), sp.GetService<RedisAdmissionStore>(),
            sp.GetService<SettlementRetries>(), sp.GetService<IDeviceStandingSource>(), sp.GetService<ILiveInstances>()));
        return builder;
    }
}
