using System.Globalization;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Telemetry;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// What the client is told for each admission refusal, in one place: status, Anthropic error type, message, headers
/// and the reason counted in <c>claudeproxy.requests.rejected</c>.
/// </summary>
public static class Refusals
{
    /// <summary>The metric reason for a refusal.</summary>
    public static string Reason(AdmissionOutcome outcome) => outcome switch
    {
        AdmissionOutcome.RateLimited => "rate_limit",
        AdmissionOutcome.TokenBudgetExhausted => "token_budget",
        AdmissionOutcome.SpendCapReached => "spend_cap",
        AdmissionOutcome.SpendUnknown => "spend_unknown",
        AdmissionOutcome.Revoked => "revoked",
        AdmissionOutcome.Pending => "pending",
        AdmissionOutcome.PolicyStale => "policy_stale",
        AdmissionOutcome.UnknownDevice => "unknown_device",
        _ => "redis_unavailable",
    };

    /// <summary>The 401 message for a refusal of the device's standing, or null when the outcome is not one.</summary>
    public static string? StandingMessage(AdmissionOutcome outcome) => outcome switch
    {
        AdmissionOutcome.Revoked => "this device has been revoked by an operator",
        AdmissionOutcome.Pending => "this device is waiting for an operator's approval",
        AdmissionOutcome.PolicyStale => "this device's policy has changed: refresh the token with POST /refresh",
        AdmissionOutcome.UnknownDevice => "unknown device: this gateway only admits devices an operator has registered",
        _ => null,
    };

    /// <summary>Writes the refusal of <paramref name="decision"/> and counts it.</summary>
    public static Task WriteAsync(HttpContext context, Admission decision, AdmissionRequest request, SpendPeriod period, GatewayMetrics metrics, TimeProvider time)
    {
        metrics.Rejected(Reason(decision.Outcome));
        var headers = context.Response.Headers;
        switch (decision.Outcome)
        {
            case AdmissionOutcome.RateLimited:
                return WriteRateLimitedAsync(context, decision.Rate, request.RateWindow);
            case AdmissionOutcome.TokenBudgetExhausted:
                var limit = request.TokenLimit ?? 0;
                headers["retry-after"] = WholeSeconds(decision.RetryAfter);
                headers["anthropic-ratelimit-tokens-limit"] = limit.ToString(CultureInfo.InvariantCulture);
                headers["anthropic-ratelimit-tokens-remaining"] = "0";
                headers["anthropic-ratelimit-tokens-reset"] = Rfc3339(time.GetUtcNow() + decision.RetryAfter);
                return ApiErrors.WriteAsync(context, 429, "rate_limit_error",
                    $"token budget of {limit} tokens per minute reached for this device ({decision.TokensUsed} used)");
            case AdmissionOutcome.SpendCapReached:
                // No retry-after: retrying before the period resets cannot help.
                return ApiErrors.WriteAsync(context, 429, "rate_limit_error",
                    $"spend cap of {Usd(request.SpendCapMicros)} USD per {period.ToString().ToLowerInvariant()} reached for this device " +
                    $"({Usd(decision.SpentMicros)} USD spent or reserved); it resets at {Rfc3339(request.SpendPeriodEnd)}");
            case AdmissionOutcome.SpendUnknown:
                return ApiErrors.WriteAsync(context, 503, "api_error",
                    "the gateway cannot read this device's spend for its cap right now (Postgres is unavailable); retry shortly");
            case AdmissionOutcome.Revoked or AdmissionOutcome.Pending or AdmissionOutcome.PolicyStale or AdmissionOutcome.UnknownDevice:
                return ApiErrors.WriteAsync(context, 401, "authentication_error", StandingMessage(decision.Outcome)!);
            default:
                return ApiErrors.WriteAsync(context, 503, "api_error", "the gateway cannot check limits right now (Redis is unavailable); retry shortly");
        }
    }

    /// <summary>The device's request limit, with the headers that describe it (also used before admission, from what this instance last learned).</summary>
    public static Task WriteRateLimitedAsync(HttpContext context, RateDecision rate, TimeSpan window)
    {
        WriteRateHeaders(context, rate);
        return ApiErrors.WriteAsync(context, 429, "rate_limit_error", $"rate limit of {rate.Limit} requests per {Seconds(window)} reached for this device");
    }

    /// <summary><c>retry-after</c> and <c>anthropic-ratelimit-requests-*</c> for a request limit (a device's, or an address's for /bootstrap).</summary>
    public static void WriteRateHeaders(HttpContext context, RateDecision decision)
    {
        var headers = context.Response.Headers;
        headers["retry-after"] = WholeSeconds(decision.RetryAfter);
        headers["anthropic-ratelimit-requests-limit"] = decision.Limit.ToString(CultureInfo.InvariantCulture);
        headers["anthropic-ratelimit-requests-remaining"] = decision.Remaining.ToString(CultureInfo.InvariantCulture);
        headers["anthropic-ratelimit-requests-reset"] = Rfc3339(decision.ResetAt);
    }

    private static string Usd(long micros) => (micros / 1_000_000m).ToString("0.00####", CultureInfo.InvariantCulture);

    private static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s";

    internal static string WholeSeconds(TimeSpan span) => Math.Max(1, (int)Math.Ceiling(span.TotalSeconds)).ToString(CultureInfo.InvariantCulture);

    private static string Rfc3339(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}
