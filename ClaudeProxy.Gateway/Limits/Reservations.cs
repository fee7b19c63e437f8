using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Gateway.Usage;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// What a request asks admission for: the device's limits from its token (or the defaults), the spend period it
/// falls in, and the worst case it can cost, reserved against the cap before it is forwarded.
/// </summary>
public sealed class Reservations(GatewayOptions options, PriceBook prices, TimeProvider time)
{
    private const long MicrosPerDollar = 1_000_000;

    /// <summary>The admission request for one request of <paramref name="identity"/> under its <paramref name="policy"/> on <paramref name="route"/>.</summary>
    public AdmissionRequest For(ApiRoute route, DeviceIdentity identity, Policies.EffectivePolicy policy, RequestBody? body)
    {
        var caps = policy.CapsAt(time.GetUtcNow());
        return new AdmissionRequest(identity.DeviceId, policy.RateLimit, options.RateLimitWindow, policy.TokenLimit,
            caps.Length == 0 ? 0 : WorstCase(route, body), caps, identity.PolicyVersion);
    }

    /// <summary>
    /// The worst case this request can cost: the estimated input, the content web fetches may add and
    /// <c>max_tokens</c> of output at the model's prices (the highest prices when it has none), plus every web search
    /// its tools allow. The body was validated, so none of these is negative.
    /// </summary>
    private long WorstCase(ApiRoute route, RequestBody? body)
    {
        if (body is null || route is not (ApiRoute.Messages or ApiRoute.Complete))
        {
            return 0;
        }
        var worst = prices.WorstCase(body.Model!, InputEstimate(body) + body.WebFetchTokens, body.OutputLimit(route) ?? 0, body.WebSearches);
        return Math.Max(0, CeilMicros(worst));
    }

    /// <summary>About four bytes of request per input token: generous for text, very generous for images.</summary>
    public static long InputEstimate(RequestBody body) => body.Length / 4 + 1;

    // Clamped: a hostile body's absurd worst case is refused by any cap, never an overflow.
    public static long CeilMicros(decimal usd) => usd >= long.MaxValue / MicrosPerDollar ? long.MaxValue / 2 : (long)Math.Ceiling(usd * MicrosPerDollar);
}
