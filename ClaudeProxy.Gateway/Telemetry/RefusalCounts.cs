using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace ClaudeProxy.Gateway.Telemetry;

/// <summary>
/// The requests the gateway refused since they were last taken, by reason: one interlocked increment on the request
/// path; <see cref="Usage.RefusalRollupWriter"/> takes them every few seconds into <c>refusal_rollups</c>. The reasons are
/// the gateway's own constants, so the dictionary stays as small as that list.
/// </summary>
public sealed class RefusalCounts
{
    private readonly ConcurrentDictionary<string, StrongBox<long>> _counts = new(StringComparer.Ordinal);

    public void Add(string reason) => Interlocked.Increment(ref _counts.GetOrAdd(reason, static _ => new StrongBox<long>()).Value);

    /// <summary>Takes every count, leaving zeros behind.</summary>
    public List<KeyValuePair<string, long>> Take()
    {
        var taken = new List<KeyValuePair<string, long>>();
        foreach (var (reason, count) in _counts)
        {
            if (Interlocked.Exchange(ref count.Value, 0) is > 0 and var n)
            {
                taken.Add(new(reason, n));
            }
        }
        return taken;
    }

    /// <summary>Puts back counts that could not be stored, to be taken with the next ones.</summary>
    public void Restore(IEnumerable<KeyValuePair<string, long>> counts)
    {
        foreach (var (reason, n) in counts)
        {
            Interlocked.Add(ref _counts.GetOrAdd(reason, static _ => new StrongBox<long>()).Value, n);
        }
    }
}
