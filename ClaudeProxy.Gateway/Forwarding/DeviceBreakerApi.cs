using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The device API's <c>GET /admin/circuit-breaker</c>: this instance's upstream breaker, for any device token. Operators
/// reset the breakers through the management API (<c>POST /manage/v1/gateways/circuit-breaker/reset</c>).
/// </summary>
public static class DeviceBreakerApi
{
    public static IEndpointRouteBuilder MapDeviceBreakerApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/admin/circuit-breaker", async (HttpContext context, DeviceAuthenticator auth, UpstreamCircuitBreaker breaker) =>
        {
            if (await auth.AuthenticateAsync(context) is null)
            {
                return;
            }
            await context.Response.WriteAsJsonAsync(breaker.Status(), GatewayJsonContext.Default.BreakerStatus, cancellationToken: context.RequestAborted);
        });
        return app;
    }

    /// <summary>The breaker as the device API and the management API's gateway list show it.</summary>
    public static BreakerStatus Status(this UpstreamCircuitBreaker breaker)
    {
        var (failures, successes) = breaker.RecentCounts();
        var o = breaker.Options;
        return new BreakerStatus(breaker.State.ToString().ToLowerInvariant() switch { "halfopen" => BreakerState.HalfOpen, var s => s },
            breaker.Since, breaker.OpenUntil, failures, successes, o.FailureRatio, o.MinimumThroughput, o.SamplingDuration.TotalSeconds, o.BreakDuration.TotalSeconds);
    }
}
