using System.Collections.Concurrent;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>Without Postgres, usage is kept in memory (the most recent events), and the gateway says so at start and in /readyz.</summary>
public sealed class InMemoryUsageLog : IUsageSink
{
    public const int Capacity = 100_000;
    private readonly ConcurrentQueue<UsageEvent> _events = new();

    public void Enqueue(UsageEvent usage)
    {
        _events.Enqueue(usage);
        while (_events.Count > Capacity && _events.TryDequeue(out _))
        {
        }
    }

    public IReadOnlyList<UsageEvent> Snapshot() => [.. _events];
}
