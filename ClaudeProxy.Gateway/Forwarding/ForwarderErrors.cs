using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Telemetry;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// What the client is told when the upstream call fails: 529 while the breaker is open, 504 when Anthropic did not
/// answer in time, 502 when it could not be reached, and nothing once the answer had started. Failures are logged
/// with the handler's logger, beside the request's own line.
/// </summary>
public static partial class ForwarderErrors
{
    /// <summary>The client went away, and the upstream request was cancelled with it.</summary>
    public static bool IsCancellation(ForwarderError error) =>
        error is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.ResponseBodyCanceled;

    /// <summary>The fast refusal while the breaker is open, counted as <c>circuit_open</c>.</summary>
    public static Task WriteBreakerOpenAsync(HttpContext context, TimeSpan retryAfter, GatewayMetrics metrics)
    {
        metrics.Rejected("circuit_open");
        context.Response.Headers["retry-after"] = Refusals.WholeSeconds(retryAfter);
        return ApiErrors.WriteAsync(context, 529, "overloaded_error", "the Anthropic API is failing; the gateway's circuit breaker is open, retry later");
    }

    /// <summary>Answers a failed upstream call, when the client can still be answered.</summary>
    public static async Task WriteAsync(HttpContext context, ForwarderError error, UpstreamForwarder upstream, GatewayMetrics metrics, ILogger logger)
    {
        var exception = context.GetForwarderErrorFeature()?.Exception;
        if (exception is BrokenCircuitException or IsolatedCircuitException)
        {
            await WriteBreakerOpenAsync(context, upstream.RetryAfter, metrics);
            return;
        }
        if (IsCancellation(error))
        {
            return;
        }
        switch (error)
        {
            case ForwarderError.RequestTimedOut:
            case ForwarderError.Request when exception is Polly.Timeout.TimeoutRejectedException:
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                await ApiErrors.WriteAsync(context, 504, "timeout_error", "the Anthropic API did not answer in time");
                break;
            case ForwarderError.Request or ForwarderError.RequestCreation or ForwarderError.NoAvailableDestinations:
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                await ApiErrors.WriteAsync(context, 502, "api_error", "the gateway could not reach the Anthropic API");
                break;
            default:
                // The answer had started: nothing more can be said to the client.
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                break;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream request failed: {Error} ({ExceptionType})")]
    private static partial void LogUpstreamFailure(ILogger logger, ForwarderError error, string? exceptionType);
}
