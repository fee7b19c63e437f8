namespace ClaudeProxy.Contracts;

/// <summary>A device's status as stored, served and filtered on (<c>?status=</c>).</summary>
public static class DeviceStatus
{
    public const string Active = "active";
    public const string Pending = "pending";
    public const string Revoked = "revoked";

    public static IReadOnlyList<string> All { get; } = [Active, Pending, Revoked];
}

public sealed record DeviceView(string DeviceId, string? AppVersion, string UserId, string OrgId, string Status, List<string> Models, int RateLimit,
    int? TokenLimit, decimal? SpendCap, int PolicyVersion, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, decimal SpentThisPeriod,
    string? KeyAlgorithm = null, DateTimeOffset? KeyEnrolledAt = null, string? KeyFingerprint = null, string? OwnerUserId = null);

public sealed record PageOf<T>(List<T> Data, int Page, int PageSize, int Total);

/// <summary>The body of <c>PUT /manage/v1/devices/{id}/policy</c>: models and rate limit keep their value when left out.</summary>
public sealed record PolicyUpdate(List<string>? Models, int? RateLimit, int? TokenLimit, decimal? SpendCap);

/// <summary>The body of <c>POST /manage/v1/devices</c>; <c>owner_user_id</c>, when given, must name a person the gateway knows.</summary>
public sealed record NewDevice(string DeviceId, string? UserId, List<string>? Models, int? RateLimit, int? TokenLimit, decimal? SpendCap,
    string? OwnerUserId = null);

public sealed record IssuedTokenView(string WrapperToken, DateTimeOffset ExpiresAt);

public sealed record AuditView(long Id, DateTimeOffset Time, string Actor, string Action, string Target, string? Before, string? After);
