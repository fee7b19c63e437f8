using ClaudeProxy.Settings;

namespace ClaudeProxy.Gateway.Configuration;

/// <summary>A setting is missing or wrong. Its message is the one line the process prints before it stops.</summary>
public sealed class GatewayConfigurationException(string message) : Exception(message);

public static class GatewaySettings
{
    /// <summary>The gateway's reader of <see cref="SettingsCatalogue"/>: a bad value stops it with <see cref="GatewayConfigurationException"/>.</summary>
    public static SettingsReader Settings(this IConfiguration configuration) => new(configuration, message => new GatewayConfigurationException(message));
}
