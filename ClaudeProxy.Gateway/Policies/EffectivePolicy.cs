using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Policies;

/// <summary>One spend cap rule before it is placed in a period: what it caps, by how much, and how its period is counted.</summary>
public sealed record CapRule(SpendCapKind Kind, string Subject, string Name, long CapMicros, SpendPeriod Period, TimeZoneInfo Zone, string? LimitId);

/// <summary>
/// The policy a device's or person's requests are admitted under: the most restrictive of their own (their token's),
/// each of their groups' and the organisation's. Models must be allowed by every list; the request limit and token
/// budget are the lowest set; every spend cap applies, each reserved in the same admission. Worked out once per token
/// and policy snapshot; the caps' counters are placed in their periods again only when a period ends.
/// </summary>
public sealed class EffectivePolicy
{
    private Placed? _placed;

    private sealed record Placed(SpendCap[] Caps, DateTimeOffset ValidUntil);

    public required long SnapshotVersion { get; init; }
    public required GroupPolicy[] Groups { get; init; }
    /// <summary>The groups' ids separated by spaces, as usage records them; null without groups.</summary>
    public string? GroupIds { get; init; }
    public required ModelAllowlist OwnModels { get; init; }
    public required int RateLimit { get; init; }
    public required string RateLimitFrom { get; init; }
    public int? TokenLimit { get; init; }
    public string? TokenLimitFrom { get; init; }
    public required CapRule[] CapRules { get; init; }
    /// <summary>The rule the model allowlist comes from ("user", "device", or "group:NAME" when a group narrows it).</summary>
    public required string ModelsFrom { get; init; }

    /// <summary>True when the model is allowed by the token's list and by every group's that sets one.</summary>
    public bool Allows(string model)
    {
        if (!OwnModels.Allows(model))
        {
            return false;
        }
        foreach (var group in Groups)
        {
            if (group.Models is { } models && !models.Allows(model))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The caps placed in the periods <paramref name="now"/> falls in, each with its counter.</summary>
    public SpendCap[] CapsAt(DateTimeOffset now)
    {
        if (CapRules.Length == 0)
        {
            return [];
        }
        var placed = Volatile.Read(ref _placed);
        if (placed is null || now >= placed.ValidUntil)
        {
            placed = Place(now);
            Volatile.Write(ref _placed, placed);
        }
        return placed.Caps;
    }

    private Placed Place(DateTimeOffset now)
    {
        var caps = new List<SpendCap>(CapRules.Length);
        var until = DateTimeOffset.MaxValue;
        foreach (var rule in CapRules)
        {
            var (start, end, id) = SpendPeriods.Of(rule.Period, now, rule.Zone);
            until = end < until ? end : until;
            var counter = rule.Kind switch
            {
                SpendCapKind.GroupPool => RedisAdmissionStore.PoolKey(rule.Subject, id),
                SpendCapKind.Organization => RedisAdmissionStore.OrganizationKey(id),
                _ => RedisAdmissionStore.SpendKey(rule.Subject, id),
            };
            var cap = new SpendCap(rule.Kind, counter, rule.Subject, rule.Name, rule.CapMicros, rule.Period, rule.Zone.Id, start, end, rule.LimitId);
            // Caps on one counter (a device's own spend in one period) are one cap: the lowest.
            var same = caps.FindIndex(c => c.Counter == counter);
            if (same < 0)
            {
                caps.Add(cap);
            }
            else if (cap.CapMicros < caps[same].CapMicros)
            {
                caps[same] = cap;
            }
        }
        return new Placed([.. caps], until);
    }
}

/// <summary>Works out, and keeps with each token, the <see cref="EffectivePolicy"/> of a device or person.</summary>
public sealed class PolicyResolver(PolicyStore store, LimitOptions limits)
{
    /// <summary>The effective policy of the token's holder under the current snapshot (cached on the identity).</summary>
    public EffectivePolicy For(DeviceIdentity identity)
    {
        var snapshot = store.Current;
        if (identity.Policy is { } cached && cached.SnapshotVersion == snapshot.Version)
        {
            return cached;
        }
        var policy = Resolve(identity, snapshot, limits);
        identity.Policy = policy;
        return policy;
    }

    public static EffectivePolicy Resolve(DeviceIdentity identity, PolicySnapshot snapshot, LimitOptions limits)
    {
        var own = identity.IsPerson ? "user" : "device";
        var groups = snapshot.GroupsOf(identity.DeviceId, identity.Groups);
        var rateLimit = identity.RateLimit;
        var rateFrom = own;
        var tokenLimit = identity.TokenLimit ?? limits.TokenLimitPerMinute;
        string? tokenFrom = identity.TokenLimit is not null ? own : tokenLimit is not null ? "organization" : null;
        var modelsFrom = own;
        var rules = new List<CapRule>();
        if (identity.SpendCap is decimal cap)
        {
            rules.Add(new CapRule(SpendCapKind.Device, identity.DeviceId, identity.IsPerson ? "your own spend cap" : "this device's spend cap",
                Reservations.CeilMicros(cap), limits.SpendPeriod, TimeZoneInfo.Utc, null));
        }
        if (identity.IsPerson && snapshot.UserLimit(identity.UserId) is { } userLimit)
        {
            rules.Add(Rule(SpendCapKind.User, identity.DeviceId, "your spend limit", userLimit, TimeZoneInfo.Utc, limits));
        }
        foreach (var group in groups)
        {
            if (group.RateLimit is int groupRate && groupRate < rateLimit)
            {
                (rateLimit, rateFrom) = (groupRate, "group:" + group.Name);
            }
            if (group.TokenLimit is int groupTokens && (tokenLimit is null || groupTokens < tokenLimit))
            {
                (tokenLimit, tokenFrom) = (groupTokens, "group:" + group.Name);
            }
            if (group.Models is not null && modelsFrom == own)
            {
                modelsFrom = "group:" + group.Name;
            }
            if (group.MemberLimit is { } member)
            {
                rules.Add(Rule(SpendCapKind.GroupMember, identity.DeviceId, $"the {group.Name} group's cap on each member", member, group.Zone, limits));
            }
            if (group.PoolLimit is { } pool)
            {
                rules.Add(Rule(SpendCapKind.GroupPool, group.GroupId, $"the {group.Name} group's shared pool", pool, group.Zone, limits));
            }
        }
        if (snapshot.Organization is { } organization)
        {
            rules.Add(Rule(SpendCapKind.Organization, "", "the organisation's spend limit", organization, TimeZoneInfo.Utc, limits));
        }
        if (rules.Count > RedisAdmissionStore.MaxCaps)
        {
            rules.RemoveRange(RedisAdmissionStore.MaxCaps, rules.Count - RedisAdmissionStore.MaxCaps);
        }
        return new EffectivePolicy
        {
            SnapshotVersion = snapshot.Version,
            Groups = groups,
            GroupIds = groups.Length == 0 ? null : string.Join(' ', groups.Select(g => g.GroupId)),
            OwnModels = identity.Models,
            ModelsFrom = modelsFrom,
            RateLimit = rateLimit,
            RateLimitFrom = rateFrom,
            TokenLimit = tokenLimit,
            TokenLimitFrom = tokenFrom,
            CapRules = [.. rules],
        };
    }

    private static CapRule Rule(SpendCapKind kind, string subject, string name, SpendLimitRecord limit, TimeZoneInfo zone, LimitOptions limits) =>
        new(kind, subject, name, limit.AmountCents * 10_000, SpendPeriods.Parse(limit.Period) ?? limits.SpendPeriod, zone, limit.SpendLimitId);
}
