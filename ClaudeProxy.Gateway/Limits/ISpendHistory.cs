namespace ClaudeProxy.Gateway.Limits;

/// <summary>What a device has spent since a moment, from the durable usage record; used when a spend counter was lost.</summary>
public interface ISpendHistory
{
    ValueTask<long> SpentMicrosAsync(string deviceId, DateTimeOffset since, CancellationToken cancellationToken);
}

/// <summary>Without a database there is no record to rebuild from.</summary>
public sealed class NoSpendHistory : ISpendHistory
{
    public ValueTask<long> SpentMicrosAsync(string deviceId, DateTimeOffset since, CancellationToken cancellationToken) => ValueTask.FromResult(0L);
}
