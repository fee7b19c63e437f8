using ClaudeProxy.Gateway.Configuration;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Gateway.Tokens;

public enum BootstrapMode { Open, Approval, Closed }

/// <summary>Who may get tokens from <c>/bootstrap</c>: anyone, devices an operator approved, or known devices only.</summary>
public sealed record BootstrapOptions(BootstrapMode Mode)
{
    /// <summary>Reads <c>BOOTSTRAP_MODE</c>; approval and closed need device records, so Postgres.</summary>
    public static BootstrapOptions Load(IConfiguration config, BackingServices backing)
    {
        var mode = config.Settings().Choice<BootstrapMode>(S.BootstrapMode);
        if (mode != BootstrapMode.Open && !backing.Postgres)
        {
            throw new GatewayConfigurationException($"{S.BootstrapMode.Name}={mode.ToString().ToLowerInvariant()} needs a database: set {S.DatabaseConnectionString.Name} or {S.DatabaseUrl.Name}.");
        }
        return new BootstrapOptions(mode);
    }
}
