using System.Globalization;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// The spend-limit headers Claude Code reads (<c>anthropic-ratelimit-unified-*</c>): on every answered request of a
/// signed-in person, and of a device that asks for them with <see cref="OptInHeader"/>, they give the status against
/// the binding cap (the one closest to its limit), its utilisation, the threshold passed (0.75 or 0.95, which makes
/// Claude Code show "You've used NN% …") and when the period resets. At the cap the refusal is Claude Code's spend
/// limit: 429 <c>billing_error</c> with <c>x-should-retry: false</c>.
/// </summary>
public static class SpendLimitHeaders
{
    /// <summary>A device token's request header (<c>unified</c>) that asks for these headers and the billing refusal.</summary>
    public const string OptInHeader = "claudeproxy-spend-limits";

    public const string Status = "anthropic-ratelimit-unified-status";
    public const string Claim = "anthropic-ratelimit-unified-representative-claim";
    public const string Reset = "anthropic-ratelimit-unified-reset";
    public const string OverageStatus = "anthropic-ratelimit-unified-overage-status";
    public const string OverageUtilization = "anthropic-ratelimit-unified-overage-utilization";
    public const string OverageThreshold = "anthropic-ratelimit-unified-overage-surpassed-threshold";
    public const string OverageReset = "anthropic-ratelimit-unified-overage-reset";
    public const string OverageDisabledReason = "anthropic-ratelimit-unified-overage-disabled-reason";

    /// <summary>Every header this class may write, for CORS to expose.</summary>
    public static readonly string[] All = [Status, Claim, Reset, OverageStatus, OverageUtilization, OverageThreshold, OverageReset, OverageDisabledReason];

    /// <summary>True when the caller is shown its spend as Claude Code shows a spend limit.</summary>
    public static bool Applies(HttpContext context, DeviceIdentity identity) =>
        identity.IsPerson || context.Request.Headers.TryGetValue(OptInHeader, out var value) && string.Equals(value, "unified", StringComparison.OrdinalIgnoreCase);

    /// <summary>The share of a cap used, spend before this request's own reservation: 0 to 1 and more.</summary>
    public static double Utilization(SpendCap cap, long spentMicros) => cap.CapMicros <= 0 ? 1 : Math.Max(0, spentMicros) / (double)cap.CapMicros;

    /// <summary>The headers of an admitted request, from the binding cap; nothing without caps.</summary>
    public static void WriteAdmitted(HttpResponse response, AdmissionRequest request, Admission decision)
    {
        if (decision.Binding < 0 || decision.Spent is not { } spent)
        {
            return;
        }
        var cap = request.Caps[decision.Binding];
        var utilization = Utilization(cap, spent[decision.Binding] - (decision.Reserved ? request.ReserveMicros : 0));
        var status = utilization >= 0.75 ? "allowed_warning" : "allowed";
        Write(response, cap, status, utilization);
        if (utilization >= 0.75)
        {
            response.Headers[OverageThreshold] = utilization >= 0.95 ? "0.95" : "0.75";
        }
    }

    /// <summary>The headers of a request refused at a cap.</summary>
    public static void WriteRejected(HttpResponse response, SpendCap cap, long spentMicros)
    {
        Write(response, cap, "rejected", Math.Max(1, Utilization(cap, spentMicros)));
        response.Headers[OverageDisabledReason] = "out_of_credits";
    }

    private static void Write(HttpResponse response, SpendCap cap, string status, double utilization)
    {
        var headers = response.Headers;
        var reset = cap.PeriodEnd.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        headers[Status] = status;
        headers[Claim] = "overage";
        headers[Reset] = reset;
        headers[OverageStatus] = status;
        headers[OverageUtilization] = Math.Round(utilization, 2).ToString("0.00", CultureInfo.InvariantCulture);
        headers[OverageReset] = reset;
    }
}
