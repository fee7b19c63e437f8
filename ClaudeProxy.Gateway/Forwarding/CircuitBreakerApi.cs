using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary><c>GET /admin/circuit-breaker</c> for any device; <c>POST /admin/circuit-breaker/reset</c> for operators only.</summary>
public static class CircuitBreakerApi
{
    public static IEndpointRouteBuilder MapCircuitBreakerApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/admin/circuit-breaker", async (HttpContext context, DeviceAuthenticator auth, UpstreamCircuitBreaker breaker) =>
        {
            if (await auth.AuthenticateAsync(context) is null)
            {
                return;
            }
            await context.Response.WriteAsJsonAsync(BreakerStatus.Of(breaker), GatewayJsonContext.Default.BreakerStatus, cancellationToken: context.RequestAborted);
        });
        app.MapPost("/admin/circuit-breaker/reset", async (HttpContext context, GatewayOptions options, TokenService tokens, BreakerResetBroadcast reset) =>
        {
            if (!await OperatorKey.CheckAsync(context, options, tokens))
            {
                return;
            }
            await reset.ResetEverywhereAsync(context.RequestAborted);
            context.Response.StatusCode = 204;
        });
        return app;
    }
}

public sealed record BreakerStatus(string State, DateTimeOffset Since, DateTimeOffset? OpenUntil, long RecentFailures, long RecentSuccesses,
    double FailureRatio, int MinimumThroughput, double SamplingSeconds, double BreakSeconds)
{
    public static BreakerStatus Of(UpstreamCircuitBreaker breaker)
    {
        var (failures, successes) = breaker.RecentCounts();
        var o = breaker.Options;
        return new BreakerStatus(breaker.State.ToString().ToLowerInvariant() switch { "halfopen" => "half-open", var s => s },
            breaker.Since, breaker.OpenUntil, failures, successes, o.FailureRatio, o.MinimumThroughput, o.SamplingDuration.TotalSeconds, o.BreakDuration.TotalSeconds);
    }
}
