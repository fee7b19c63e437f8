using System.Text.Json.Serialization;

namespace ClaudeProxy.Contracts;

/// <summary>
/// What a spend limit applies to, in Anthropic's Admin API shape: <c>{"type":"user","user_id"}</c>,
/// <c>{"type":"rbac_group","rbac_group_id"}</c> or <c>{"type":"organization"}</c>.
/// </summary>
public sealed record SpendLimitScope(
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? UserId = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? RbacGroupId = null);

/// <summary>
/// A spend limit as <c>/v1/organizations/spend_limits</c> answers it: <c>amount</c> is whole cents as a decimal string;
/// <c>pooled_budget</c> appears for group scopes only (true: the group's shared pool; false: each member's cap).
/// </summary>
public sealed record SpendLimitView(
    string Type,
    string Id,
    SpendLimitScope Scope,
    string Amount,
    string Currency,
    string Period,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? PooledBudget,
    bool IsEnabled,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt);

/// <summary>
/// A page of spend limits. <c>has_more</c> says whether more lie in the direction asked (after <c>last_id</c>, or before
/// <c>first_id</c> when paging with <c>before_id</c>); <c>next_page</c> is the cursor the Anthropic SDKs send back as <c>page</c>.
/// </summary>
public sealed record SpendLimitPage(List<SpendLimitView> Data, bool HasMore, string? FirstId, string? LastId, string? NextPage);

/// <summary>The answer to deleting a spend limit.</summary>
public sealed record SpendLimitDeleted(string Type, string Id);
