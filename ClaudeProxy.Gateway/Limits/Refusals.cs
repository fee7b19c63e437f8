using System.Globalization;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Telemetry;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// What the client is told when a limit refuses a request, in one place: status, Anthropic error type, message,
/// headers (<c>retry-after</c>, <c>anthropic-ratelimit-*</c>) and the reason counted in
/// <c>claudeproxy.requests.rejected</c>. The request path uses an instance (it knows the settings the messages
/// quote); the static members serve the other limited endpoints and the standing checks.
/// </summary>
public sealed class Refusals(GatewayOptions gateway, GatewayMetrics metrics, TimeProvider time)
{
    private const string LimitsUnavailable = "the gateway cannot check limits right now (Redis is unavailable); retry shortly";

    /// <summary>The status, Anthropic error type and metric reason of each refusal.</summary>
    public static Refusal Of(AdmissionOutcome outcome) => outcome switch
    {
        AdmissionOutcome.RateLimited => new(429, "rate_limit_error", "rate_limit"),
        AdmissionOutcome.TokenBudgetExhausted => new(429, "rate_limit_error", "token_budget"),
        AdmissionOutcome.SpendCapReached => new(429, "rate_limit_error", "spend_cap"),
        AdmissionOutcome.SpendUnknown => new(503, "api_error", "spend_unknown"),
        AdmissionOutcome.Revoked => new(401, "authentication_error", "revoked"),
        AdmissionOutcome.Pending => new(401, "authentication_error", "pending"),
        AdmissionOutcome.PolicyStale => new(401, "authentication_error", "policy_stale"),
        AdmissionOutcome.UnknownDevice => new(401, "authentication_error", "unknown_device"),
        _ => new(503, "api_error", "redis_unavailable"),
    };

    /// <summary>The metric reason for a refusal.</summary>
    public static string Reason(AdmissionOutcome outcome) => Of(outcome).Reason;

    /// <summary>The 401 message for a refusal of the device's standing, or null when the outcome is not one.</summary>
    public static string? StandingMessage(AdmissionOutcome outcome) => outcome switch
    {
        AdmissionOutcome.Revoked => "this device has been revoked by an operator",
        AdmissionOutcome.Pending => "this device is waiting for an operator's approval",
        AdmissionOutcome.PolicyStale => "this device's policy has changed: refresh the token with POST /refresh",
        AdmissionOutcome.UnknownDevice => "unknown device: this gateway only admits devices an operator has registered",
        _ => null,
    };

    /// <summary>Why a signed-in person's token is refused by their standing (deactivated, or their policy changed).</summary>
    public const string PersonStandingMessage =
        "your gateway sign-in is no longer valid (your access was ended or changed by an operator): run /login to sign in again";

    /// <summary>
    /// Writes the refusal of <paramref name="decision"/> and counts it. A spend cap refuses as Claude Code's spend limit
    /// (429 <c>billing_error</c>, <c>x-should-retry: false</c>, the unified headers) when <paramref name="unified"/>.
    /// </summary>
    public Task WriteAsync(HttpContext context, Admission decision, AdmissionRequest request, bool unified = false)
    {
        var refusal = Of(decision.Outcome);
        metrics.Rejected(refusal.Reason);
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
                return refusal.WriteAsync(context,
                    $"token budget of {limit} tokens per minute reached for this device ({decision.TokensUsed} used)");
            case AdmissionOutcome.SpendCapReached:
                var cap = request.Caps[decision.Binding];
                var message = $"{Capitalised(cap.Name)} of {Usd(cap.CapMicros)} USD per {Noun(cap.Period)} is reached " +
                    $"({Usd(decision.SpentMicros)} USD spent or reserved); it resets at {Rfc3339(cap.PeriodEnd)}";
                if (unified)
                {
                    SpendLimitHeaders.WriteRejected(context.Response, cap, decision.SpentMicros);
                    headers["x-should-retry"] = "false";
                    headers["retry-after"] = WholeSeconds(cap.PeriodEnd - time.GetUtcNow());
                    return ApiErrors.WriteAsync(context, 429, "billing_error", message);
                }
                // No retry-after: retrying before the period resets cannot help.
                return refusal.WriteAsync(context, message);
            case AdmissionOutcome.SpendUnknown:
                return refusal.WriteAsync(context,
                    "the gateway cannot read this device's spend for its cap right now (Postgres is unavailable); retry shortly");
            case AdmissionOutcome.Revoked or AdmissionOutcome.Pending or AdmissionOutcome.PolicyStale or AdmissionOutcome.UnknownDevice:
                if (request.DeviceId.StartsWith('@'))
                {
                    return Tokens.DeviceAuthenticator.WritePersonRefusalAsync(context, PersonStandingMessage);
                }
                return refusal.WriteAsync(context, StandingMessage(decision.Outcome)!);
            default:
                return refusal.WriteAsync(context, LimitsUnavailable);
        }
    }

    /// <summary>Refuses, before its body is read, a device this instance last found out of requests, and counts it.</summary>
    public Task WriteKnownRateLimitedAsync(HttpContext context, RateDecision known)
    {
        metrics.Rejected(Reason(AdmissionOutcome.RateLimited));
        return WriteRateLimitedAsync(context, known, gateway.RateLimitWindow);
    }

    /// <summary>Refuses a device that already has <paramref name="limit"/> requests in flight on this instance, and counts it.</summary>
    public Task WriteTooManyInFlightAsync(HttpContext context, int limit)
    {
        metrics.Rejected("concurrency");
        context.Response.Headers["retry-after"] = "1";
        return ApiErrors.WriteAsync(context, 429, "rate_limit_error",
            $"this device already has {limit} requests in flight on this gateway instance; retry when one has finished");
    }

    /// <summary>
    /// The refusal of a plain limiter (an address's or a device's limit on token issuing): 503 when the limit could
    /// not be checked (<paramref name="decision"/> null), 429 with the request limit headers when it is used up.
    /// </summary>
    public static Task WriteLimiterRefusalAsync(HttpContext context, RateDecision? decision, string what)
    {
        if (decision is not { } d)
        {
            return ApiErrors.WriteAsync(context, 503, "api_error", LimitsUnavailable);
        }
        WriteRateHeaders(context, d);
        return ApiErrors.WriteAsync(context, 429, "rate_limit_error", $"{what}: at most {d.Limit} per minute");
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

    /// <summary>Whole seconds, at least one, for <c>retry-after</c>.</summary>
    public static string WholeSeconds(TimeSpan span) => Math.Max(1, (int)Math.Ceiling(span.TotalSeconds)).ToString(CultureInfo.InvariantCulture);

    /// <summary>The device's request limit, with the headers that describe it.</summary>
    private static Task WriteRateLimitedAsync(HttpContext context, RateDecision rate, TimeSpan window)
    {
        WriteRateHeaders(context, rate);
        return Of(AdmissionOutcome.RateLimited).WriteAsync(context, $"rate limit of {rate.Limit} requests per {Seconds(window)} reached for this device");
    }

    /// <summary>A cap's name at the start of a sentence.</summary>
    internal static string Capitalised(string text) => text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..];

    private static string Noun(SpendPeriod period) => period.ToString().ToLowerInvariant();

    private static string Usd(long micros) => (micros / 1_000_000m).ToString("0.00####", CultureInfo.InvariantCulture);

    private static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s";

    private static string Rfc3339(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}

/// <summary>How one kind of refusal looks to the client and in the metrics.</summary>
public readonly record struct Refusal(int Status, string ErrorType, string Reason)
{
    public Task WriteAsync(HttpContext context, string message) => ApiErrors.WriteAsync(context, Status, ErrorType, message);
}
