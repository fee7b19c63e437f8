using ClaudeProxy.Gateway.Configuration;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>Without a database every device gets the configured default policy.</summary>
public sealed class ConfiguredDeviceDirectory(GatewayOptions options) : IDeviceDirectory
{
    public DevicePolicy DefaultPolicy { get; } = new(options.DefaultModels, options.RateLimitMax, null, options.DefaultSpendCap, 1);

    public ValueTask<DeviceAdmission> BootstrapAsync(BootstrapRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(new DeviceAdmission(request.DeviceId, request.UserId ?? request.DeviceId, options.OrgId, DefaultPolicy));

    public ValueTask<DeviceAdmission> RefreshAsync(DeviceIdentity identity, CancellationToken cancellationToken) =>
        ValueTask.FromResult(new DeviceAdmission(identity.DeviceId, identity.UserId, identity.OrgId, DefaultPolicy));
}
