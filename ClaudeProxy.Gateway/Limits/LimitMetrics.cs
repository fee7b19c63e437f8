using System.Diagnostics.Metrics;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>The limiter's own instruments, on the gateway's meter.</summary>
public sealed class LimitMetrics
{
    private readonly Counter<long> _settlementsRetried;
    private readonly Counter<long> _settlementsDropped;

    public LimitMetrics(IMeterFactory meterFactory, SettlementQueueSize queue)
    {
        var meter = meterFactory.Create(TelemetryNames.GatewayMeter);
        _settlementsRetried = meter.CreateCounter<long>("claudeproxy.limits.settlements.retried", "{settlement}",
            "Settlements Redis could not take at once, queued to be retried");
        _settlementsDropped = meter.CreateCounter<long>("claudeproxy.limits.settlements.dropped", "{settlement}",
            "Queued settlements given up, by reason: period_ended (their spend period is over) or queue_full");
        meter.CreateObservableGauge("claudeproxy.limits.settlements.pending", () => queue.Pending, "{settlement}",
            "Settlements waiting for Redis");
    }

    public void SettlementRetried() => _settlementsRetried.Add(1);

    public void SettlementDropped(string reason) => _settlementsDropped.Add(1, new KeyValuePair<string, object?>("reason", reason));
}

/// <summary>How many settlements wait for Redis now; read by the gauge.</summary>
public sealed class SettlementQueueSize
{
    private int _pending;

    public int Pending => Volatile.Read(ref _pending);

    public int Increment() => Interlocked.Increment(ref _pending);

    public int Decrement() => Interlocked.Decrement(ref _pending);
}
