using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// Records every measurement of the gateway's meter while alive, with its tags: of one gateway when given its services
/// (other gateways run in the same process while tests run in parallel), else of all.
/// </summary>
public sealed class MetricCapture : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Name, double Value, Dictionary<string, object?> Tags)> _measurements = new();

    public MetricCapture(IServiceProvider? gateway = null)
    {
        var scope = gateway?.GetService(typeof(IMeterFactory));
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "ClaudeProxy.Gateway" && (scope is null || ReferenceEquals(instrument.Meter.Scope, scope)))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
        _listener.Start();
    }

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var dict = new Dictionary<string, object?>();
        foreach (var tag in tags)
        {
            dict[tag.Key] = tag.Value;
        }
        _measurements.Enqueue((instrument.Name, value, dict));
        lock (_waiters)
        {
            foreach (var waiter in _waiters.Where(w => w.Name == instrument.Name && w.Matches(dict)).ToList())
            {
                _waiters.Remove(waiter);
                waiter.Done.TrySetResult();
            }
        }
    }

    private readonly List<(string Name, Func<Dictionary<string, object?>, bool> Matches, TaskCompletionSource Done)> _waiters = [];

    /// <summary>Completes once a measurement of <paramref name="name"/> whose tags satisfy <paramref name="tags"/> has been recorded.</summary>
    public Task RecordedAsync(string name, Func<Dictionary<string, object?>, bool> tags)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_waiters)
        {
            _waiters.Add((name, tags, done));
        }
        // A measurement recorded before the waiter was added.
        if (_measurements.Any(m => m.Name == name && tags(m.Tags)))
        {
            lock (_waiters)
            {
                _waiters.RemoveAll(w => w.Done == done);
            }
            done.TrySetResult();
        }
        return done.Task;
    }

    public double Sum(string name, string? tag = null, object? value = null) =>
        _measurements.Where(m => m.Name == name && (tag is null || (m.Tags.TryGetValue(tag, out var v) && Equals(v?.ToString(), value?.ToString()))))
            .Sum(m => m.Value);

    public void Dispose() => _listener.Dispose();
}
