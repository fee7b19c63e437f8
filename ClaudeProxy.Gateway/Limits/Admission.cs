namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Everything one request must pass before it is forwarded, checked and reserved in one atomic step.
/// <see cref="SpendCapMicros"/> is <see cref="NoCap"/> when the device has no cap; a cap of 0 refuses every request.
/// </summary>
public sealed record AdmissionRequest(
    string DeviceId,
    int RateLimit,
    TimeSpan RateWindow,
    int? TokenLimit,
    long SpendCapMicros,
    long ReserveMicros,
    string SpendPeriodId,
    DateTimeOffset SpendPeriodStart,
    DateTimeOffset SpendPeriodEnd)
{
    public const long NoCap = -1;
}

public enum AdmissionOutcome { Admitted, RateLimited, TokenBudgetExhausted, SpendCapReached, Unavailable, SpendUnknown }

/// <summary>
/// The decision. <see cref="Rate"/> describes the device's request limit; for a token budget refusal
/// <see cref="TokensUsed"/> and <see cref="RetryAfter"/> say how far over it is and for how long.
/// </summary>
public readonly record struct Admission(
    AdmissionOutcome Outcome,
    RateDecision Rate,
    TimeSpan RetryAfter = default,
    long TokensUsed = 0,
    long SpentMicros = 0,
    bool Reserved = false);

/// <summary>What a request really cost, to settle its reservation and feed the token budget.</summary>
public sealed record Settlement(string DeviceId, string SpendPeriodId, long ReservedMicros, long ActualMicros, long Tokens);

/// <summary>What the limiter decided about a request limit, and what to tell the client about it.</summary>
public readonly record struct RateDecision(bool Allowed, int Limit, int Remaining, DateTimeOffset ResetAt, TimeSpan RetryAfter);

/// <summary>Where limits and reservations live: Redis across instances, or this process.</summary>
public interface IAdmissionStore
{
    /// <param name="spentSeedMicros">What the device already spent this period, when the store has lost its counter; null asks the store whether it has one.</param>
    ValueTask<(Admission Admission, bool NeedsSeed)> AdmitAsync(AdmissionRequest request, long? spentSeedMicros, CancellationToken cancellationToken);

    ValueTask SettleAsync(Settlement settlement, TimeSpan spendTtl, CancellationToken cancellationToken);

    /// <summary>A plain request limit on any key (the per-IP bootstrap limit).</summary>
    ValueTask<RateDecision> AcquireAsync(string key, int limit, TimeSpan window, CancellationToken cancellationToken);
}
