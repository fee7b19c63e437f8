using System.Net;
using ClaudeProxy.Admin.Auth;

namespace ClaudeProxy.Admin;

public sealed class AdminConfigurationException(string message) : Exception(message);

/// <summary>The admin app's settings.</summary>
public sealed class AdminOptions
{
    public required string ManagementUrl { get; init; }
    public required string OperatorKey { get; init; }
    public required string Username { get; init; }
    public required AdminPassword Password { get; init; }

    /// <summary>Where the keys that protect sign-in and antiforgery cookies are kept; null: the framework's default place.</summary>
    public string? KeysDirectory { get; init; }

    /// <summary>Whether every cookie the app sets is <c>Secure</c>, whatever scheme the request arrived with.</summary>
    public bool SecureCookies { get; init; }

    /// <summary>Networks whose <c>X-Forwarded-For/Proto/Host</c> are believed (the ingress); empty: none are.</summary>
    public IReadOnlyList<IPNetwork> TrustedProxies { get; init; } = [];

    public static AdminOptions Load(IConfiguration config)
    {
        var key = config["ADMIN_API_KEY"] is { Length: > 0 } k ? k : throw new AdminConfigurationException("ADMIN_API_KEY is required but not set.");
        var password = config["ADMIN_PASSWORD_HASH"] is { Length: > 0 } hash ? AdminPassword.FromHash(hash)
            : config["ADMIN_PASSWORD"] is { Length: > 0 } plain ? AdminPassword.FromPlain(plain)
            : throw new AdminConfigurationException("ADMIN_PASSWORD_HASH (or ADMIN_PASSWORD for local use) is required but not set.");
        return new AdminOptions
        {
            // Service discovery resolves the gateway's "management" endpoint from services__gateway__management__0.
            ManagementUrl = config["GATEWAY_MANAGEMENT_URL"] is { Length: > 0 } url ? url : "http://_management.gateway",
            OperatorKey = key,
            Username = config["ADMIN_USERNAME"] is { Length: > 0 } u ? u : "admin",
            Password = password,
            KeysDirectory = string.IsNullOrWhiteSpace(config["DATA_PROTECTION_KEYS_DIR"]) ? null : config["DATA_PROTECTION_KEYS_DIR"]!.Trim(),
            SecureCookies = Boolean(config, "ADMIN_SECURE_COOKIES"),
            TrustedProxies = Networks(config, "TRUSTED_PROXIES"),
        };
    }

    internal static bool Boolean(IConfiguration config, string name) => config[name]?.Trim().ToLowerInvariant() switch
    {
        null or "" or "false" => false,
        "true" => true,
        _ => throw new AdminConfigurationException($"{name} must be true or false."),
    };

    /// <summary>A comma list of CIDR networks or single addresses: "10.0.0.0/8, 192.168.1.7" (read as the gateway reads it).</summary>
    internal static IReadOnlyList<IPNetwork> Networks(IConfiguration config, string name) =>
        NetworkList.Parse(config[name]) ?? throw new AdminConfigurationException(NetworkList.Malformed(name));
}
