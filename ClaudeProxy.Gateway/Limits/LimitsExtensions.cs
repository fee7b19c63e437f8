using ClaudeProxy.Gateway.Forwarding;
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
        builder.Services.TryAddSingleton<ISpendHistory, NoSpendHistory>();

        // Degraded, not unhealthy, in open mode: the instance still serves, with in-process limits.
        var redis = builder.AddRedisIfConfigured("redis", options.FailureMode == RedisFailureMode.Open ? HealthStatus.Degraded : HealthStatus.Unhealthy);
        if (redis)
        {
            builder.Services.AddSingleton(sp => new RedisAdmissionStore(sp.GetRequiredService<IConnectionMultiplexer>()));
            builder.Services.AddSingleton(sp => ActivatorUtilities.CreateInstance<AdmissionService>(sp, sp.GetRequiredService<RedisAdmissionStore>()));
        }
        else
        {
            builder.Services.AddSingleton(sp => ActivatorUtilities.CreateInstance<AdmissionService>(sp));
            builder.Services.AddHealthChecks().AddCheck("limits", () =>
                HealthCheckResult.Healthy("no Redis configured: limits are kept in this process (one instance)"), ["ready"]);
        }
        return builder;
    }
}
