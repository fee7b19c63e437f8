namespace ClaudeProxy.Contracts;

/// <summary>
/// The policy a person's or a device's requests are admitted under: the most restrictive of their own, each of their
/// groups' and the organisation's, with the rule each part comes from (<c>"user"</c>, <c>"device"</c>,
/// <c>"group:NAME"</c>, <c>"organization"</c> or <c>"default"</c>).
/// </summary>
public sealed record EffectivePolicyView(
    string DeviceId,
    string? UserId,
    List<GroupRef> Groups,
    List<string>? Models,
    string ModelsFrom,
    int RateLimit,
    string RateLimitFrom,
    int? TokenLimit,
    string? TokenLimitFrom,
    List<SpendCapView> Caps,
    /// <summary>The <see cref="SpendCapView.Key"/> of the cap closest to its limit (the one Claude Code is shown), null without caps.</summary>
    string? Binding,
    /// <summary>Why that cap binds, in a sentence.</summary>
    string? BindingReason);

/// <summary>A group a person or device is in.</summary>
public sealed record GroupRef(string GroupId, string Name);

/// <summary>
/// One spend cap that applies to a request. <see cref="Kind"/>: <c>device</c> (the device's own cap), <c>user</c>
/// (the person's spend limit), <c>group_member</c> (a group's cap on each member), <c>group_pool</c> (a group's
/// shared pool) or <c>organization</c>. <see cref="SpentUsd"/> is what was spent (and is reserved by requests in
/// flight) against it this period.
/// </summary>
public sealed record SpendCapView(
    string Key,
    string Kind,
    string? ScopeId,
    string Name,
    decimal CapUsd,
    decimal SpentUsd,
    string Period,
    string TimeZone,
    DateTimeOffset PeriodStart,
    DateTimeOffset ResetsAt,
    string? SpendLimitId,
    bool Binding);

/// <summary>A group's spend this period against its caps: <c>GET /manage/v1/groups/spend</c> (every group) and in the group page.</summary>
public sealed record GroupSpendView(
    string GroupId,
    string Name,
    decimal SpentUsd,
    decimal? PoolCapUsd,
    decimal? MemberCapUsd,
    string Period,
    string TimeZone,
    DateTimeOffset PeriodStart,
    DateTimeOffset ResetsAt,
    string? PoolLimitId,
    string? MemberLimitId,
    int MemberCount);
