using System.Collections.Concurrent;

namespace ClaudeProxy.AnthropicSimulator;

/// <summary>What the simulator received, and the gates tests use to hold a stream at a chosen point.</summary>
public sealed class SimulatorState
{
    private const int MaxRecorded = 10_000;
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _gates = new();
    private long _received;

    /// <summary>Every request that reached an API route, authorised or not.</summary>
    public long ReceivedCount => Interlocked.Read(ref _received);

    public IReadOnlyList<RecordedRequest> Requests => [.. _requests];

    public RecordedRequest? Find(string header, string value) =>
        _requests.FirstOrDefault(r => r.Headers.TryGetValue(header, out var v) && v == value);

    internal void Record(RecordedRequest request, bool keep)
    {
        Interlocked.Increment(ref _received);
        if (!keep)
        {
            return;
        }
        _requests.Enqueue(request);
        while (_requests.Count > MaxRecorded && _requests.TryDequeue(out _))
        {
        }
    }

    public void Clear()
    {
        _requests.Clear();
        Interlocked.Exchange(ref _received, 0);
    }

    /// <summary>The gate a request names with <c>x-sim-hold</c>; the stream waits on it after its first event.</summary>
    public TaskCompletionSource Gate(string name) =>
        _gates.GetOrAdd(name, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    public void Release(string name) => Gate(name).TrySetResult();
}

/// <summary>One request as the simulator received it.</summary>
public sealed class RecordedRequest
{
    public required string Method { get; init; }
    public required string PathAndQuery { get; init; }
    public required IReadOnlyDictionary<string, string> Headers { get; init; }
    public required byte[] Body { get; init; }

    /// <summary>Completed when the request ends; true when the client went away before the answer was complete.</summary>
    public TaskCompletionSource<bool> Aborted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}
