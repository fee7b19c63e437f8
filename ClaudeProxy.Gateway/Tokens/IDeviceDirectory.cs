namespace ClaudeProxy.Gateway.Tokens;

/// <summary>Where devices are known: who may bootstrap or refresh, and with which policy.</summary>
public interface IDeviceDirectory
{
    ValueTask<DeviceAdmission> BootstrapAsync(BootstrapRequest request, CancellationToken cancellationToken);

    ValueTask<DeviceAdmission> RefreshAsync(DeviceIdentity identity, CancellationToken cancellationToken);
}

public sealed record BootstrapRequest(string DeviceId, string? AppVersion, string? UserId);

/// <summary>Either a policy to put in a new token, or why not (status and message for the client).</summary>
public sealed record DeviceAdmission(string DeviceId, string UserId, string OrgId, DevicePolicy? Policy, int Status = 200, string? Refusal = null)
{
    public static DeviceAdmission Refuse(string deviceId, int status, string message) =>
        new(deviceId, deviceId, "", null, status, message);
}
