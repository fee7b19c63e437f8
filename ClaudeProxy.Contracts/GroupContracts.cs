namespace ClaudeProxy.Contracts;

/// <summary>A group: <c>idp</c> (members are the people whose groups claim names it) or <c>manual</c> (members are devices listed by hand), with its policy.</summary>
public sealed record GroupView(string GroupId, string Name, string Source, List<string>? Models, int? RateLimit, int? TokenLimit, string? SpendPeriod,
    string? TimeZone, int PolicyVersion, int MemberCount, List<string>? Members = null);

/// <summary>The policy of a group; null fields mean the group sets nothing there.</summary>
public sealed record GroupPolicy(List<string>? Models, int? RateLimit, int? TokenLimit, string? SpendPeriod, string? TimeZone);

/// <summary>The body of <c>POST /manage/v1/groups</c>.</summary>
public sealed record NewGroup(string? Name, string? Source, GroupPolicy? Policy);

/// <summary>The body of <c>POST /manage/v1/groups/{id}/members</c>.</summary>
public sealed record NewGroupMember(string? DeviceId);

/// <summary>The body of <c>PUT /manage/v1/groups/{id}/caps</c>: a group's cap on each member and on its shared pool, in USD; null removes one.</summary>
public sealed record GroupCaps(decimal? MemberCapUsd, decimal? PoolCapUsd);
