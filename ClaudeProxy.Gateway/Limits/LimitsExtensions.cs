using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Admission: limits shared through Redis when it is configured (in-process ones while it is away, or without it),
/// and spend history from Postgres when it is configured.
/// </summary>
public static class LimitsExtensions
{
    public static IHostApplicationBuilder AddLimits(this IHostApplicationBuilder builder)
    {
        var backing = builder.AddBackingServices();
        var options = LimitOptions.Load(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<InMemoryAdmissionStore>();
        builder.Services.AddSingleton<SettlementQueueSize>();
        builder.Services.AddSingleton<LimitMetrics>();
        // Groups and spend limits: read at start and on every change, never per request.
        builder.Services.AddSingleton<Policies.PolicyStore>();
        builder.Services.AddSingleton<Policies.PolicyChanges>(sp => sp.GetRequiredService<Policies.PolicyStore>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Policies.PolicyStore>());
        builder.Services.AddSingleton<Policies.PolicyResolver>();
        builder.Services.AddSingleton<Policies.PolicyViews>();
        if (backing.Postgres)
        {
            builder.Services.AddSingleton<ISpendHistory, Data.PostgresSpendHistory>();
        }
        else
        {
            builder.Services.AddSingleton<ISpendHistory, NoSpendHistory>();
        }

        if (backing.Redis)
        {
            // Degraded, not unhealthy, in open mode: the instance still serves, with in-process limits.
            builder.AddRedis(options.FailureMode == RedisFailureMode.Open ? HealthStatus.Degraded : HealthStatus.Unhealthy);
            builder.Services.AddSingleton(sp => new RedisAdmissionStore(sp.GetRequiredService<IConnectionMultiplexer>()));
            builder.Services.AddSingleton<SettlementRetries>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<SettlementRetries>());
        }
        else
        {
            builder.Services.AddHealthChecks().AddCheck("limits", () =>
                HealthCheckResult.Healthy("no Redis configured: limits are kept in this process (one instance)"), ["ready"]);
        }
        // Standing (with Postgres) and live instances are registered by the concerns that own them.
        builder.Services.AddSingleton(sp => new AdmissionService(
            sp.GetRequiredService<InMemoryAdmissionStore>(), options, sp.GetRequiredService<ISpendHistory>(), sp.GetRequiredService<Telemetry.GatewayMetrics>(),
            sp.GetRequiredService<ILogger<AdmissionService>>(),
            backing.Redis ? sp.GetRequiredService<RedisAdmissionStore>() : null,
            backing.Redis ? sp.GetRequiredService<SettlementRetries>() : null,
            backing.Postgres ? sp.GetRequiredService<IDeviceStandingSource>() : null,
            sp.GetService<ILiveInstances>(),
            sp.GetService<Events.SpendThresholds>()));
        return builder;
    }
}
