namespace ClaudeProxy.Gateway.Tokens;

/// <summary>Where devices are known: who may bootstrap or refresh, with which policy, and with which key.</summary>
public interface IDeviceDirectory
{
    /// <summary>The key the device enrolled, or null when it has none (or is unknown).</summary>
    ValueTask<DeviceKey?> EnrolledKeyAsync(string deviceId, CancellationToken cancellationToken);

    /// <summary>
    /// Admits a device. <see cref="BootstrapRequest.Key"/> is the key the request proved it holds: a device without a
    /// key enrols it (the first enrolment wins); a device with a key is refused unless it is that same key.
    /// </summary>
    ValueTask<DeviceAdmission> BootstrapAsync(BootstrapRequest request, CancellationToken cancellationToken);

    /// <summary>Renews a token; <paramref name="key"/> as for bootstrap, except that refresh never enrols.</summary>
    ValueTask<DeviceAdmission> RefreshAsync(DeviceIdentity identity, DeviceKey? key, CancellationToken cancellationToken);
}

public sealed record BootstrapRequest(string DeviceId, string? AppVersion, string? UserId, DeviceKey? Key = null);

/// <summary>Either a policy to put in a new token, or why not (status and message for the client).</summary>
public sealed record DeviceAdmission(string DeviceId, string UserId, string OrgId, DevicePolicy? Policy, int Status = 200, string? Refusal = null)
{
    public static DeviceAdmission Refuse(string deviceId, int status, string message) =>
        new(deviceId, deviceId, "", null, status, message);

    /// <summary>Refused because the request was not signed by the key the device enrolled.</summary>
    public static DeviceAdmission NotItsKey(string deviceId, DeviceKey? offered) => Refuse(deviceId, 401, offered is null
        ? "this device has enrolled a key: sign the request with it (x-device-signature); an operator can reset a lost key"
        : "this device has enrolled a different key: sign with the enrolled key, or ask an operator to reset it before enrolling a new one");
}
