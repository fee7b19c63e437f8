namespace ClaudeProxy.Contracts;

/// <summary>A person's status as stored, served and filtered on (<c>?status=</c>).</summary>
public static class UserStatus
{
    public const string Active = "active";
    public const string Deactivated = "deactivated";

    public static IReadOnlyList<string> All { get; } = [Active, Deactivated];
}

/// <summary>
/// A person who signed in with the company's identity provider: who they are, their standing, the devices they own
/// (their own sign-in record <c>@usr_...</c> among them) and what those spent this spend period.
/// </summary>
public sealed record UserView(string UserId, string? Email, string? Name, List<string> Groups, string Status, DateTimeOffset FirstSeen,
    DateTimeOffset LastSeen, List<UserDeviceView> Devices, decimal SpentThisPeriod);

/// <summary>One device a person owns, with its standing and its spend this period.</summary>
public sealed record UserDeviceView(string DeviceId, string Status, DateTimeOffset LastSeen, decimal SpentThisPeriod);

/// <summary>The body of <c>PUT /manage/v1/devices/{id}/owner</c>: the person the device belongs to, or null for nobody.</summary>
public sealed record DeviceOwnerUpdate(string? OwnerUserId);
