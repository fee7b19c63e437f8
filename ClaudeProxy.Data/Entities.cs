namespace ClaudeProxy.Gateway.Data;

/// <summary>A device as the gateway knows it: who it is, its standing and its policy.</summary>
public sealed class DeviceRecord
{
    public required string DeviceId { get; set; }
    public string? AppVersion { get; set; }
    public required string UserId { get; set; }
    public required string OrgId { get; set; }
    public required string Status { get; set; }
    public required List<string> Models { get; set; }
    public int RateLimit { get; set; }
    public int? TokenLimit { get; set; }
    public decimal? SpendCap { get; set; }
    public int PolicyVersion { get; set; }
    /// <summary>The device's enrolled public key (SubjectPublicKeyInfo, base64); null until it enrols one.</summary>
    public string? PublicKey { get; set; }
    /// <summary>"ed25519" or "p256" while a key is enrolled.</summary>
    public string? KeyAlgorithm { get; set; }
    public DateTimeOffset? KeyEnrolledAt { get; set; }
    public DateTimeOffset FirstSeen { get; set; }
    public DateTimeOffset LastSeen { get; set; }
    /// <summary>The person (<see cref="UserRecord.UserId"/>) this device belongs to, if any.</summary>
    public string? OwnerUserId { get; set; }
}

/// <summary>
/// A person who signs in with the company's identity provider. Their requests are admitted under the device record
/// <see cref="UserRecord.DeviceIdOf"/> (standing, policy and spend, exactly like a device's).
/// </summary>
public sealed class UserRecord
{
    public const string Active = "active";
    public const string Deactivated = "deactivated";

    /// <summary>The gateway's own id for the person: <c>usr_</c> and 16 lower-case letters and digits.</summary>
    public required string UserId { get; set; }
    /// <summary>The identity provider's issuer and the person's <c>sub</c> there: together they name the person.</summary>
    public required string Issuer { get; set; }
    public required string Subject { get; set; }
    public string? Email { get; set; }
    public string? Name { get; set; }
    /// <summary>The groups the identity provider named at the last sign-in or refresh (the configured groups claim).</summary>
    public required List<string> Groups { get; set; }
    /// <summary><see cref="Active"/> or <see cref="Deactivated"/>.</summary>
    public required string Status { get; set; }
    public DateTimeOffset FirstSeen { get; set; }
    public DateTimeOffset LastSeen { get; set; }

    /// <summary>
    /// The device record a person's requests are admitted under. Device ids cannot contain <c>@</c>, so no device
    /// enrolled by name can take it.
    /// </summary>
    public static string DeviceIdOf(string userId) => "@" + userId;

    /// <summary>The person whose sign-in device this is, or null for a device enrolled by name.</summary>
    public static string? UserIdOf(string deviceId) => deviceId.StartsWith('@') ? deviceId[1..] : null;
}

/// <summary>
/// One sign-in through the device authorization grant: the code Claude Code polls with (kept only as its SHA-256),
/// the code the person types, and what became of it.
/// </summary>
public sealed class DeviceAuthorization
{
    public const string Pending = "pending";
    public const string Approved = "approved";
    public const string Denied = "denied";
    public const string Consumed = "consumed";

    public long Id { get; set; }
    /// <summary>Hex SHA-256 of the device code.</summary>
    public required string DeviceCodeHash { get; set; }
    /// <summary>Eight letters of <c>BCDFGHJKMNPQRSTVWXYZ</c>, without the dash shown in the middle.</summary>
    public required string UserCode { get; set; }
    /// <summary><see cref="Pending"/>, <see cref="Approved"/>, <see cref="Denied"/> or <see cref="Consumed"/>.</summary>
    public required string Status { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
    /// <summary>The polling interval the client must keep; raised by each <c>slow_down</c>.</summary>
    public int IntervalSeconds { get; set; }
    public DateTimeOffset? LastPolledAt { get; set; }
    /// <summary>The address that asked for the code.</summary>
    public string? ClientAddress { get; set; }
    /// <summary>Who signed in, once approved.</summary>
    public string? UserId { get; set; }
    /// <summary>The identity provider's refresh token from the sign-in, encrypted; handed to the session's first refresh token.</summary>
    public string? IdpRefreshToken { get; set; }
}

/// <summary>
/// A refresh token of a signed-in session (kept only as its SHA-256). Single use: each refresh spends it and issues
/// the next of the same family; a spent token presented again revokes the whole family.
/// </summary>
public sealed class RefreshTokenRecord
{
    public long Id { get; set; }
    public required string TokenHash { get; set; }
    /// <summary>Every token of one sign-in shares it.</summary>
    public Guid FamilyId { get; set; }
    public required string UserId { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
    public DateTimeOffset? UsedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
    /// <summary>The identity provider's refresh token, encrypted: asked at each refresh whether the person may still sign in.</summary>
    public string? IdpRefreshToken { get; set; }
}

/// <summary>
/// A group of people (named like the identity provider's groups claim) or of devices (made in the admin app), with
/// the policy its members get: each field, when set, limits every member (the most restrictive of all that apply wins).
/// </summary>
public sealed class GroupRecord
{
    public const string FromProvider = "idp";
    public const string Manual = "manual";

    /// <summary><c>grp_</c> and 16 lower-case letters and digits.</summary>
    public required string GroupId { get; set; }
    /// <summary>Unique; for <see cref="FromProvider"/> groups, the value the groups claim carries.</summary>
    public required string Name { get; set; }
    /// <summary><see cref="FromProvider"/> (members from the claim) or <see cref="Manual"/> (members listed in group_members).</summary>
    public required string Source { get; set; }
    public List<string>? Models { get; set; }
    public int? RateLimit { get; set; }
    public int? TokenLimit { get; set; }
    /// <summary>day, week or month; null: the organisation's (<c>SPEND_CAP_PERIOD</c>).</summary>
    public string? SpendPeriod { get; set; }
    /// <summary>An IANA time zone the period's boundaries are counted in; null: UTC.</summary>
    public string? TimeZone { get; set; }
    public int PolicyVersion { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>A device in a <see cref="GroupRecord.Manual"/> group (people join groups through the provider's claim).</summary>
public sealed class GroupMember
{
    public required string GroupId { get; set; }
    public required string DeviceId { get; set; }
    public DateTimeOffset AddedAt { get; set; }
}

/// <summary>
/// A spend limit in the shape of Anthropic's Admin API: on a person, on each member of a group, on a group's pool
/// (<see cref="PooledBudget"/>), or on the whole organisation. One per scope and kind: creating another replaces it.
/// </summary>
public sealed class SpendLimitRecord
{
    public const string User = "user";
    public const string Group = "rbac_group";
    public const string Organization = "organization";

    /// <summary><c>spl_</c> and 24 lower-case letters and digits.</summary>
    public required string SpendLimitId { get; set; }
    /// <summary><see cref="User"/>, <see cref="Group"/> or <see cref="Organization"/>.</summary>
    public required string ScopeType { get; set; }
    /// <summary>The user id or group id; empty for the organisation.</summary>
    public required string ScopeId { get; set; }
    /// <summary>For a group: the cap is shared by all its members rather than given to each.</summary>
    public bool PooledBudget { get; set; }
    /// <summary>In cents (Anthropic's API writes it as a decimal string).</summary>
    public long AmountCents { get; set; }
    /// <summary>daily, weekly or monthly.</summary>
    public required string Period { get; set; }
    public required string Currency { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>
/// A Claude Code managed-settings document for a group, or for everyone (<see cref="Everyone"/>); a person gets the
/// merge of everyone's and their groups'.
/// </summary>
public sealed class ManagedSettingsRecord
{
    public const string Everyone = "everyone";

    /// <summary><see cref="Everyone"/> or a group id.</summary>
    public required string Scope { get; set; }
    /// <summary>The settings object, as JSON text.</summary>
    public required string Settings { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public string? UpdatedBy { get; set; }
}

/// <summary>A usage event Postgres refused (a data error, not an outage), kept with the reason instead of blocking the rest.</summary>
public sealed class UsageDeadLetter
{
    public long Id { get; set; }
    public DateTimeOffset Time { get; set; }
    public Guid? EventId { get; set; }
    /// <summary>Where it was refused: "writer" (a live batch) or "replay" (a spool file).</summary>
    public required string Source { get; set; }
    public required string Reason { get; set; }
    /// <summary>The event as JSON text (escaped, so even a NUL character in a field is kept).</summary>
    public required string Payload { get; set; }
}

/// <summary>
/// Usage summed per hour ('h'), day ('d'), week from Monday ('w') or month ('m'), device and model, kept up to date by the writer (see <c>UsageSql</c>):
/// the sums of the <see cref="Usage.UsageEvent"/> counters of the same names, with the requests, the errors (status 400
/// and above) and the requests without a price of their own.
/// </summary>
public sealed record UsageRollup(string Granularity, DateTimeOffset BucketStart, string DeviceId, string Model, long Requests, long Errors,
    long InputTokens, long OutputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens, long CacheReadTokens, decimal CostUsd, long UnpricedRequests);

/// <summary>Who changed what, before and after, and when.</summary>
public sealed class AuditEntry
{
    public long Id { get; set; }
    public DateTimeOffset Time { get; set; }
    public required string Actor { get; set; }
    public required string Action { get; set; }
    public required string Target { get; set; }
    public string? Before { get; set; }
    public string? After { get; set; }
}
