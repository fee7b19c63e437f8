using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// The <c>/readyz</c> entry that turns unready the moment the application starts stopping: requests in flight run on,
/// and anything still routing new ones here is told to stop. Liveness (<c>/healthz</c>) does not include it.
/// </summary>
internal sealed class StoppingHealthCheck(IHostApplicationLifetime lifetime) : IHealthCheck
{
    public const string Name = "lifetime";

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(lifetime.ApplicationStopping.IsCancellationRequested
            ? HealthCheckResult.Unhealthy("stopping: finishing the requests in flight, taking no new ones")
            : HealthCheckResult.Healthy("running"));
}
