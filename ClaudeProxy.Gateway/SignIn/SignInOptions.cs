using System.Net;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Settings;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Gateway.SignIn;

/// <summary>
/// People signing in with the company's OpenID Connect provider (Claude Code's gateway sign-in). Off unless
/// <c>OIDC_AUTHORITY</c> is set. Deliberately not a record: its ToString must never print the client secret.
/// </summary>
public sealed class SignInOptions
{
    public const string Scheme = "idp";
    public const string CallbackPath = "/oauth/callback";

    public bool Enabled => Authority is not null;
    public Uri? Authority { get; init; }
    public string ClientId { get; init; } = "";
    public string? ClientSecret { get; init; }
    public string GroupsClaim { get; init; } = "groups";
    public IReadOnlyList<string> Scopes { get; init; } = ["openid", "profile", "email", "offline_access"];
    public TimeSpan AccessTokenLifetime { get; init; } = TimeSpan.FromHours(1);
    public TimeSpan RefreshTokenLifetime { get; init; } = TimeSpan.FromDays(14);
    public TimeSpan DeviceCodeLifetime { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Device codes asked for, and verification pages posted, per address per minute.</summary>
    public int RateLimit { get; init; } = 20;
    /// <summary>The polling interval handed out with each device code, in seconds.</summary>
    public int PollingInterval { get; init; } = 5;

    public static SignInOptions Load(IConfiguration config, BackingServices backing)
    {
        var settings = config.Settings();
        var authority = settings.Text(S.OidcAuthority);
        if (authority is null)
        {
            return new SignInOptions();
        }
        if (!Uri.TryCreate(authority.Trim(), UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp))
        {
            throw new GatewayConfigurationException($"{S.OidcAuthority.Name} must be the identity provider's absolute https URL (its issuer).");
        }
        if (uri.Scheme == Uri.UriSchemeHttp && !IsLoopback(uri))
        {
            throw new GatewayConfigurationException($"{S.OidcAuthority.Name} must use https (plain http only for a provider on this machine's loopback).");
        }
        var clientId = settings.Text(S.OidcClientId);
        if (string.IsNullOrWhiteSpace(clientId))
        {
            throw new GatewayConfigurationException($"{S.OidcClientId.Name} is required when {S.OidcAuthority.Name} is set.");
        }
        if (!backing.Postgres)
        {
            throw new GatewayConfigurationException($"{S.OidcAuthority.Name} needs Postgres (people and their sign-ins are kept there): set {S.DatabaseUrl.Name}.");
        }
        var scopes = settings.List(S.OidcScopes);
        if (!scopes.Contains("openid"))
        {
            throw new GatewayConfigurationException($"{S.OidcScopes.Name} must include openid.");
        }
        return new SignInOptions
        {
            Authority = uri,
            ClientId = clientId.Trim(),
            ClientSecret = settings.Text(S.OidcClientSecret) is { Length: > 0 } secret ? secret : null,
            GroupsClaim = settings.Text(S.OidcGroupsClaim)!.Trim(),
            Scopes = scopes,
            AccessTokenLifetime = TimeSpan.FromSeconds(settings.Number(S.UserTokenLifetimeSeconds)),
            RefreshTokenLifetime = TimeSpan.FromDays(settings.Number(S.RefreshTokenLifetimeDays)),
            DeviceCodeLifetime = TimeSpan.FromSeconds(settings.Number(S.DeviceCodeLifetimeSeconds)),
            RateLimit = (int)settings.Number(S.SignInRateLimit),
        };
    }

    private static bool IsLoopback(Uri uri) =>
        uri.IsLoopback || IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address);
}
