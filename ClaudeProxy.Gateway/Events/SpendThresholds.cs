using ClaudeProxy.Contracts;

using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using ClaudeProxy.Gateway.Limits;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// Announces a spend cap passing 50, 80 and 100 % in its period, from the numbers admission already has: what is spent
/// and reserved against each cap before this request (a refusal at the cap counts as 100 %). Below 50 % it only
/// compares numbers; above, one dictionary lookup per cap finds the highest threshold this instance already announced
/// for the counter (counters are per period), and only a crossing raises an event. Other instances may announce the
/// same crossing: the event's dedup key <c>spend:{counter}:{threshold}</c> keeps it to one stored event and one delivery.
/// </summary>
public sealed class SpendThresholds(GatewayEvents events)
{
    private static readonly int[] Levels = [50, 80, 100];
    private const int MaxCounters = 100_000;
    private readonly ConcurrentDictionary<string, int> _announced = new(StringComparer.Ordinal);

    public void Observe(AdmissionRequest request, in Admission admission)
    {
        if (admission.Spent is not { } spent)
        {
            return;
        }
        var caps = request.Caps;
        var own = admission.Reserved ? request.ReserveMicros : 0;
        for (var i = 0; i < caps.Length && i < spent.Length; i++)
        {
            var cap = caps[i].CapMicros;
            if (cap <= 0)
            {
                continue;
            }
            var refusedHere = admission.Outcome == AdmissionOutcome.SpendCapReached && admission.Binding == i;
            var used = Math.Max(0, spent[i] - own);
            if (!refusedHere && used < cap / 2)
            {
                continue;
            }
            var level = refusedHere || used >= cap ? 100 : used * 5 >= cap * 4 ? 80 : 50;
            Announce(request, caps[i], level, refusedHere ? Math.Max(used, cap) : used);
        }
    }

    private void Announce(AdmissionRequest request, SpendCap cap, int level, long used)
    {
        while (true)
        {
            int done;
            if (_announced.TryGetValue(cap.Counter, out done))
            {
                if (done >= level || !_announced.TryUpdate(cap.Counter, level, done))
                {
                    if (done >= level)
                    {
                        return;
                    }
                    continue;
                }
            }
            else
            {
                if (_announced.Count > MaxCounters)
                {
                    _announced.Clear();
                }
                if (!_announced.TryAdd(cap.Counter, level))
                {
                    continue;
                }
            }
            foreach (var threshold in Levels)
            {
                // Every threshold passed since the last one announced: a jump from 40 % to 90 % tells of 50 and 80.
                if (threshold > done && threshold <= level)
                {
                    events.Raise(EventTypes.SpendThresholdCrossed, Data(request, cap, threshold, used), $"spend:{cap.Counter}:{threshold}");
                }
            }
            return;
        }
    }

    /// <summary>Whose cap it is, told to an operator (the names in a policy are written for the device's own user).</summary>
    private static string Who(SpendCap cap)
    {
        var who = cap.Subject.StartsWith('@') ? cap.Subject[1..] : "device " + cap.Subject;
        return cap.Kind switch
        {
            SpendCapKind.Device => who + "'s spend cap",
            SpendCapKind.User => who + "'s spend limit",
            SpendCapKind.GroupMember => $"{who} under {cap.Name}",
            _ => cap.Name,
        };
    }

    private static JsonObject Data(AdmissionRequest request, SpendCap cap, int threshold, long used) => new()
    {
        ["scope"] = cap.Kind switch
        {
            SpendCapKind.Device => "device",
            SpendCapKind.User => "user",
            SpendCapKind.GroupMember => "group_member",
            SpendCapKind.GroupPool => "group_pool",
            _ => "organization",
        },
        ["subject"] = cap.Subject,
        ["name"] = Who(cap),
        ["device_id"] = request.DeviceId,
        ["limit_id"] = cap.LimitId,
        ["threshold"] = threshold,
        ["cap_usd"] = cap.CapMicros / 1_000_000m,
        ["spent_usd"] = Math.Round(used / 1_000_000m, 6),
        ["period"] = cap.Period.ToString().ToLowerInvariant(),
        ["period_start"] = cap.PeriodStart,
        ["period_end"] = cap.PeriodEnd,
        ["time_zone"] = cap.TimeZone,
    };
}
