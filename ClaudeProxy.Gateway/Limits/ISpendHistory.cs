namespace ClaudeProxy.Gateway.Limits;

/// <summary>What was spent against a cap's counter since a moment, from the durable usage record; used when a counter was lost.</summary>
public interface ISpendHistory
{
    /// <summary>
    /// The spend of <paramref name="subject"/> since <paramref name="since"/>: a device's own (the device, user and
    /// group member caps), a group's (the events admitted under it, for its pool) or everyone's (the organisation).
    /// </summary>
    ValueTask<long> SpentMicrosAsync(SpendCapKind kind, string subject, DateTimeOffset since, CancellationToken cancellationToken);
}

/// <summary>Without a database there is no record to rebuild from.</summary>
public sealed class NoSpendHistory : ISpendHistory
{
    public ValueTask<long> SpentMicrosAsync(SpendCapKind kind, string subject, DateTimeOffset since, CancellationToken cancellationToken) => ValueTask.FromResult(0L);
}
