using System.Collections.Concurrent;

namespace ClaudeProxy.Gateway.Limits;

/// <summary>
/// Requests in flight per device on this instance (not across instances), so that one device cannot hold every
/// connection and buffer with slow or endless requests. A device appears only while it has a request in flight.
/// </summary>
public sealed class DeviceConcurrency(int limit)
{
    private readonly ConcurrentDictionary<string, int> _inFlight = new(StringComparer.Ordinal);

    public int Limit { get; } = limit;

    /// <summary>Counts one more request for the device, or returns false when it already has <see cref="Limit"/>.</summary>
    public bool TryEnter(string deviceId)
    {
        while (true)
        {
            if (_inFlight.TryGetValue(deviceId, out var count))
            {
                if (count >= Limit)
                {
                    return false;
                }
                if (_inFlight.TryUpdate(deviceId, count + 1, count))
                {
                    return true;
                }
            }
            else if (_inFlight.TryAdd(deviceId, 1))
            {
                return true;
            }
        }
    }

    /// <summary>Releases what <see cref="TryEnter"/> counted; call once for each true it returned.</summary>
    public void Exit(string deviceId)
    {
        while (_inFlight.TryGetValue(deviceId, out var count))
        {
            if (count <= 1
                ? _inFlight.TryRemove(new KeyValuePair<string, int>(deviceId, count))
                : _inFlight.TryUpdate(deviceId, count - 1, count))
            {
                return;
            }
        }
    }

    /// <summary>The device's requests in flight now.</summary>
    public int InFlight(string deviceId) => _inFlight.TryGetValue(deviceId, out var count) ? count : 0;
}
