using System.Net;
using ClaudeProxy.Admin.Auth;
using ClaudeProxy.Settings;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Admin;

public sealed class AdminConfigurationException(string message) : Exception(message);

/// <summary>The admin app's settings.</summary>
public sealed class AdminOptions
{
    public required string ManagementUrl { get; init; }
    public required string OperatorKey { get; init; }
    /// <summary>The password sign-in's user name and password; null when <c>ADMIN_PASSWORD_LOGIN=false</c>.</summary>
    public string? Username { get; init; }
    public AdminPassword? Password { get; init; }

    /// <summary>Operators' sign-in with the company's identity provider; null when it is not configured.</summary>
    public OperatorSignInOptions? IdentityProvider { get; init; }

    /// <summary>Where the keys that protect sign-in and antiforgery cookies are kept; null: the framework's default place.</summary>
    public string? KeysDirectory { get; init; }

    /// <summary>Whether every cookie the app sets is <c>Secure</c>, whatever scheme the request arrived with.</summary>
    public bool SecureCookies { get; init; }

    /// <summary>Networks whose <c>X-Forwarded-For/Proto/Host</c> are believed (the ingress); empty: none are.</summary>
    public IReadOnlyList<IPNetwork> TrustedProxies { get; init; } = [];

    public static AdminOptions Load(IConfiguration config)
    {
        var settings = config.Settings();
        var key = settings.Text(S.AdminAppApiKey)!;
        var identityProvider = OperatorSignInOptions.Load(settings);
        var passwordLogin = settings.Boolean(S.AdminPasswordLogin);
        if (!passwordLogin && identityProvider is null)
        {
            throw new AdminConfigurationException(
                $"{S.AdminPasswordLogin.Name}=false needs {S.OidcAuthority.Name}, {S.OidcClientId.Name} and {S.OidcAdminGroup.Name} set, or no operator could sign in.");
        }
        var password = !passwordLogin ? null
            : settings.Text(S.AdminPasswordHash) is { } hash ? AdminPassword.FromHash(hash)
            : settings.Text(S.AdminPassword) is { } plain ? AdminPassword.FromPlain(plain)
            : throw new AdminConfigurationException($"{S.AdminPasswordHash.Name} (or {S.AdminPassword.Name} for local use) is required but not set.");
        return new AdminOptions
        {
            // Service discovery resolves the gateway's "management" endpoint from services__gateway__management__0.
            ManagementUrl = settings.Text(S.GatewayManagementUrl)!,
            OperatorKey = key,
            Username = passwordLogin ? settings.Text(S.AdminUsername)! : null,
            Password = password,
            IdentityProvider = identityProvider,
            KeysDirectory = string.IsNullOrWhiteSpace(settings.Raw(S.DataProtectionKeysDir)) ? null : settings.Raw(S.DataProtectionKeysDir)!.Trim(),
            SecureCookies = settings.Boolean(S.AdminSecureCookies),
            TrustedProxies = settings.Networks(S.TrustedProxies),
        };
    }
}

public static class AdminSettings
{
    /// <summary>The admin app's reader of <see cref="SettingsCatalogue"/>: a bad value stops it with <see cref="AdminConfigurationException"/>.</summary>
    public static SettingsReader Settings(this IConfiguration configuration) => new(configuration, message => new AdminConfigurationException(message));
}
