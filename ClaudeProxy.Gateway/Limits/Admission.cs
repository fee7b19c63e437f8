namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Everything one request must pass before it is forwarded, checked and reserved in one atomic step: the device's
/// standing (<see cref="PolicyVersion"/> is the token's), its request limit and token budget, and every spend cap that
/// applies (<see cref="Caps"/>: none, or the device's own, the person's, each group's member cap and pool, the
/// organisation's), each reserving <see cref="ReserveMicros"/>.
/// </summary>
public sealed record AdmissionRequest(
    string DeviceId,
    int RateLimit,
    TimeSpan RateWindow,
    int? TokenLimit,
    long ReserveMicros,
    SpendCap[] Caps,
    int PolicyVersion)
{
    /// <summary>The latest end of the periods of its caps (after it, no spend is left to settle); default without caps.</summary>
    public DateTimeOffset SpendPeriodEnd
    {
        get
        {
            var end = default(DateTimeOffset);
            foreach (var cap in Caps)
            {
                end = cap.PeriodEnd > end ? cap.PeriodEnd : end;
            }
            return end;
        }
    }
}

/// <summary>What a spend cap is on.</summary>
public enum SpendCapKind
{
    /// <summary>The device's own cap (its policy, in its token).</summary>
    Device,
    /// <summary>A person's spend limit.</summary>
    User,
    /// <summary>A group's cap on each of its members.</summary>
    GroupMember,
    /// <summary>A group's pool, shared by all its members.</summary>
    GroupPool,
    /// <summary>The whole organisation.</summary>
    Organization,
}

/// <summary>
/// One spend cap a request is checked against, and the Redis counter that holds the spend against it this period.
/// The caps on one device's own spend (<see cref="SpendCapKind.Device"/>, <see cref="SpendCapKind.User"/>,
/// <see cref="SpendCapKind.GroupMember"/>) share its counter of a period; a pool's counter is the group's, the
/// organisation's is one for everyone. <see cref="Subject"/> is whose spend the counter sums: the device id, the
/// group id, or empty for the organisation. <see cref="CapMicros"/> 0 refuses every request that can cost anything.
/// </summary>
public sealed record SpendCap(
    SpendCapKind Kind,
    string Counter,
    string Subject,
    string Name,
    long CapMicros,
    SpendPeriod Period,
    string TimeZone,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    string? LimitId = null);

/// <summary>
/// What admission decided. The values up to <see cref="UnknownDevice"/> are the codes the Redis admission script
/// returns (it is written from this enum), so the script and the C# side cannot disagree.
/// </summary>
public enum AdmissionOutcome
{
    /// <summary>Admitted: the request limit slot and any spend reservation are recorded.</summary>
    Admitted = 0,
    /// <summary>The device's request limit for the window is used up.</summary>
    RateLimited = 1,
    /// <summary>The device's token budget for the last minute is used up.</summary>
    TokenBudgetExhausted = 2,
    /// <summary>The worst case of this request would take the device past its spend cap.</summary>
    SpendCapReached = 3,
    /// <summary>The store lacks the device's standing or spend counter and asks for a seed (never leaves the service).</summary>
    SeedNeeded = 4,
    /// <summary>An operator revoked the device.</summary>
    Revoked = 5,
    /// <summary>The device waits for an operator's approval.</summary>
    Pending = 6,
    /// <summary>The token carries an older policy version than the device's: it must be refreshed.</summary>
    PolicyStale = 7,
    /// <summary>No record of the device, and the bootstrap mode admits only registered devices.</summary>
    UnknownDevice = 8,
    /// <summary>Redis is down and the failure mode is closed.</summary>
    Unavailable = 20,
    /// <summary>The device's spend this period could not be read from Postgres to rebuild its counter.</summary>
    SpendUnknown = 21,
}

/// <summary>Which store made a reservation, so that its settlement goes back to the same one.</summary>
public enum AdmissionStore
{
    /// <summary>Nothing was reserved anywhere (refused, or Redis down in closed mode).</summary>
    None = 0,
    /// <summary>The shared counters in Redis.</summary>
    Redis = 1,
    /// <summary>This process's counters (no Redis, or Redis away in open mode).</summary>
    Memory = 2,
}

/// <summary>
/// The decision. <see cref="Rate"/> describes the device's request limit; for a token budget refusal
/// <see cref="TokensUsed"/> and <see cref="RetryAfter"/> say how far over it is and for how long.
/// <see cref="Spent"/> holds, per cap of the request, what is spent and reserved against it (this request's
/// reservation included when admitted); <see cref="Binding"/> is the cap that refused the request, or when admitted
/// the one closest to its limit (-1 without caps), and <see cref="SpentMicros"/> its spend.
/// <see cref="Store"/> says where the admission was recorded; <see cref="Generations"/> identify the Redis spend
/// counters the reservation went into (a counter rebuilt after Redis lost it has another generation).
/// </summary>
public readonly record struct Admission(
    AdmissionOutcome Outcome,
    RateDecision Rate,
    TimeSpan RetryAfter = default,
    long TokensUsed = 0,
    bool Reserved = false,
    AdmissionStore Store = AdmissionStore.None,
    long[]? Spent = null,
    long[]? Generations = null,
    int Binding = -1)
{
    public long SpentMicros => Spent is { } spent && Binding >= 0 ? spent[Binding] : 0;

    /// <summary>The cap closest to its limit before this request's own reservation, by the share of it used.</summary>
    public static int Closest(SpendCap[] caps, long[] spent, long reserved)
    {
        var binding = -1;
        var highest = -1.0;
        for (var i = 0; i < caps.Length; i++)
        {
            var share = caps[i].CapMicros <= 0 ? 1.0 : (double)Math.Max(0, spent[i] - reserved) / caps[i].CapMicros;
            if (share > highest)
            {
                highest = share;
                binding = i;
            }
        }
        return binding;
    }
}

/// <summary>
/// What a request really cost, to settle its reservation in each of its spend <see cref="Counters"/> and feed the
/// token budget. <see cref="Generations"/> are the counters' (0 when not known): a settlement never adjusts a counter
/// rebuilt since its reservation.
/// </summary>
public sealed record Settlement(string DeviceId, string[] Counters, long[] Generations, long ReservedMicros, long ActualMicros, long Tokens,
    DateTimeOffset SpendPeriodEnd = default);

/// <summary>
/// One device's settlements summed into what Redis applies at once: the tokens, and per spend counter and generation
/// the change in micro-dollars (actual minus reserved). The settlements themselves are kept, to be retried one by one
/// if Redis cannot take the batch.
/// </summary>
public sealed class SettlementBatch
{
    private SettlementBatch(string deviceId, Settlement[] parts, long tokens, List<(string Counter, long Generation, long DeltaMicros)> spend)
    {
        DeviceId = deviceId;
        Parts = parts;
        Tokens = tokens;
        Spend = spend;
    }

    public string DeviceId { get; }
    public Settlement[] Parts { get; }
    public long Tokens { get; }
    public List<(string Counter, long Generation, long DeltaMicros)> Spend { get; }
    public bool IsEmpty => Tokens <= 0 && Spend.Count == 0;

    /// <summary>Sums settlements of one device.</summary>
    public static SettlementBatch Of(Settlement[] parts)
    {
        long tokens = 0;
        var spend = new List<(string Counter, long Generation, long DeltaMicros)>();
        foreach (var part in parts)
        {
            tokens += Math.Max(0, part.Tokens);
            var delta = part.ActualMicros - part.ReservedMicros;
            if (delta == 0)
            {
                continue;
            }
            for (var i = 0; i < part.Counters.Length; i++)
            {
                var at = -1;
                for (var j = 0; j < spend.Count && at < 0; j++)
                {
                    at = spend[j].Counter == part.Counters[i] && spend[j].Generation == part.Generations[i] ? j : -1;
                }
                if (at < 0)
                {
                    spend.Add((part.Counters[i], part.Generations[i], delta));
                }
                else
                {
                    spend[at] = (part.Counters[i], part.Generations[i], spend[at].DeltaMicros + delta);
                }
            }
        }
        spend.RemoveAll(s => s.DeltaMicros == 0);
        return new SettlementBatch(parts[0].DeviceId, parts, tokens, spend);
    }
}

/// <summary>What the limiter decided about a request limit, and what to tell the client about it.</summary>
public readonly record struct RateDecision(bool Allowed, int Limit, int Remaining, DateTimeOffset ResetAt, TimeSpan RetryAfter);

/// <summary>
/// A device's standing as the limiter checks it: its status (<c>active</c>, <c>pending</c>, <c>revoked</c>, or
/// <see cref="Unknown"/> when there is no record of it) and its current policy version.
/// </summary>
public readonly record struct DeviceStanding(string Status, int PolicyVersion)
{
    public const string Active = "active";
    public const string Pending = "pending";
    public const string Revoked = "revoked";
    public const string Unknown = "unknown";

    /// <summary>The same rules as the admission script: revoked, pending, unknown (when refused), or an older token.</summary>
    public AdmissionOutcome Check(int tokenPolicyVersion, bool refuseUnknown) => Status switch
    {
        Revoked => AdmissionOutcome.Revoked,
        Pending => AdmissionOutcome.Pending,
        Unknown => refuseUnknown ? AdmissionOutcome.UnknownDevice : AdmissionOutcome.Admitted,
        _ when tokenPolicyVersion < PolicyVersion => AdmissionOutcome.PolicyStale,
        _ => AdmissionOutcome.Admitted,
    };
}

/// <summary>
/// Where device standing comes from when Redis does not hold it: the durable record, and a local cache of it for
/// when Redis is away. Registered only with device records (Postgres); without them standing is not checked.
/// </summary>
public interface IDeviceStandingSource
{
    /// <summary>True when a device with no record is refused (closed bootstrap mode).</summary>
    bool RefusesUnknown { get; }

    /// <summary>The durable record's standing (<see cref="DeviceStanding.Unknown"/> without a record). Throws when it cannot be read.</summary>
    ValueTask<DeviceStanding> ReadAsync(string deviceId, CancellationToken cancellationToken);

    /// <summary>The answer without Redis: from this instance's cache, filled from the durable record.</summary>
    ValueTask<AdmissionOutcome> CheckLocallyAsync(string deviceId, int tokenPolicyVersion, CancellationToken cancellationToken);
}

/// <summary>How many gateway instances are alive now, as last counted; null when never counted.</summary>
public interface ILiveInstances
{
    int? LiveCount { get; }
}
