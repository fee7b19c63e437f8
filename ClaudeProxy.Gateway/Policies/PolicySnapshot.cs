using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.Policies;

/// <summary>A group as admission applies it: its limits, the zone its caps' periods are counted in, and its two caps.</summary>
public sealed class GroupPolicy
{
    public required string GroupId { get; init; }
    public required string Name { get; init; }
    /// <summary><see cref="GroupRecord.FromProvider"/> or <see cref="GroupRecord.Manual"/>.</summary>
    public required string Source { get; init; }
    public ModelAllowlist? Models { get; init; }
    public int? RateLimit { get; init; }
    public int? TokenLimit { get; init; }
    public required TimeZoneInfo Zone { get; init; }
    /// <summary>The cap on each member's own spend, if any.</summary>
    public SpendLimitRecord? MemberLimit { get; init; }
    /// <summary>The pool all members share, if any.</summary>
    public SpendLimitRecord? PoolLimit { get; init; }
}

/// <summary>
/// Every group, manual membership and spend limit, read from Postgres at once: what admission decides with, without
/// a database read per request. Replaced as a whole when an operator changes any of them.
/// </summary>
public sealed class PolicySnapshot
{
    public static readonly PolicySnapshot Empty = new(0, [], [], [], null);

    private readonly Dictionary<string, GroupPolicy> _byName;
    private readonly Dictionary<string, GroupPolicy> _byId;
    private readonly Dictionary<string, GroupPolicy[]> _manualByDevice;
    private readonly Dictionary<string, SpendLimitRecord> _userLimits;

    private PolicySnapshot(long version, IEnumerable<GroupPolicy> fromProvider, IEnumerable<GroupPolicy> all,
        Dictionary<string, GroupPolicy[]> manualByDevice, SpendLimitRecord? organization, IEnumerable<SpendLimitRecord>? userLimits = null)
    {
        Version = version;
        _byName = fromProvider.ToDictionary(g => g.Name, StringComparer.Ordinal);
        _byId = all.ToDictionary(g => g.GroupId, StringComparer.Ordinal);
        _manualByDevice = manualByDevice;
        _userLimits = (userLimits ?? []).ToDictionary(l => l.ScopeId, StringComparer.Ordinal);
        Organization = organization;
    }

    /// <summary>Grows with every load: a policy worked out from an older snapshot is worked out again.</summary>
    public long Version { get; }

    /// <summary>The organisation's spend limit, if any.</summary>
    public SpendLimitRecord? Organization { get; }

    public bool IsEmpty => _byId.Count == 0 && _userLimits.Count == 0 && Organization is null;

    /// <summary>A person's spend limit, if any.</summary>
    public SpendLimitRecord? UserLimit(string userId) => _userLimits.GetValueOrDefault(userId);

    /// <summary>The groups of a device or person: the provider's groups its token names, and the manual groups it was added to.</summary>
    public GroupPolicy[] GroupsOf(string deviceId, IReadOnlyList<string>? claimed)
    {
        if (_byId.Count == 0)
        {
            return [];
        }
        List<GroupPolicy>? groups = null;
        if (claimed is not null)
        {
            foreach (var name in claimed)
            {
                if (_byName.TryGetValue(name, out var group))
                {
                    (groups ??= []).Add(group);
                }
            }
        }
        if (_manualByDevice.TryGetValue(deviceId, out var manual))
        {
            (groups ??= []).AddRange(manual);
        }
        return groups is null ? [] : [.. groups.DistinctBy(g => g.GroupId).OrderBy(g => g.Name, StringComparer.Ordinal)];
    }

    public static async Task<PolicySnapshot> LoadAsync(GatewayDbContext db, long version, CancellationToken cancellationToken)
    {
        var groups = await db.Groups.AsNoTracking().ToListAsync(cancellationToken);
        var members = await db.GroupMembers.AsNoTracking().ToListAsync(cancellationToken);
        var limits = await db.SpendLimits.AsNoTracking().ToListAsync(cancellationToken);
        var groupLimits = limits.Where(l => l.ScopeType == SpendLimitRecord.Group).ToLookup(l => l.ScopeId, StringComparer.Ordinal);
        var policies = groups.Select(g => new GroupPolicy
        {
            GroupId = g.GroupId,
            Name = g.Name,
            Source = g.Source,
            Models = g.Models is { } models ? new ModelAllowlist(models) : null,
            RateLimit = g.RateLimit,
            TokenLimit = g.TokenLimit,
            Zone = SpendPeriods.Zone(g.TimeZone) ?? TimeZoneInfo.Utc,
            MemberLimit = groupLimits[g.GroupId].FirstOrDefault(l => !l.PooledBudget),
            PoolLimit = groupLimits[g.GroupId].FirstOrDefault(l => l.PooledBudget),
        }).ToList();
        var byId = policies.ToDictionary(p => p.GroupId, StringComparer.Ordinal);
        var manual = members.Where(m => byId.TryGetValue(m.GroupId, out var g) && g.Source == GroupRecord.Manual)
            .GroupBy(m => m.DeviceId, StringComparer.Ordinal)
            .ToDictionary(m => m.Key, m => m.Select(x => byId[x.GroupId]).ToArray(), StringComparer.Ordinal);
        return new PolicySnapshot(version, policies.Where(p => p.Source == GroupRecord.FromProvider), policies, manual,
            limits.FirstOrDefault(l => l.ScopeType == SpendLimitRecord.Organization),
            limits.Where(l => l.ScopeType == SpendLimitRecord.User));
    }
}
