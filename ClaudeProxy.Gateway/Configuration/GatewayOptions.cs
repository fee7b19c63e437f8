using System.Globalization;
using System.Text;

namespace ClaudeProxy.Gateway.Configuration;

/// <summary>
/// The gateway's settings, read once at start from the environment (the variable names README lists) and validated.
/// Deliberately not a record: its ToString must never print the secrets it holds.
/// </summary>
public sealed class GatewayOptions
{
    public const int MinJwtSecretBytes = SecretPolicy.MinBytes;

    /// <summary>Networks whose <c>X-Forwarded-For/Proto/Host</c> are believed (the ingress); empty: none are.</summary>
    public IReadOnlyList<System.Net.IPNetwork> TrustedProxies { get; init; } = [];
    /// <summary>Networks whose clients may call <c>POST /bootstrap</c> (the client address after forwarded headers); empty: any.</summary>
    public IReadOnlyList<System.Net.IPNetwork> BootstrapAllowedNetworks { get; init; } = [];
    /// <summary>How long a stop (SIGTERM) lets requests in flight run on and the usage writer drain before both are cut.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>The slowest a request body may arrive once its grace period is over; slower bodies are cut.</summary>
    public double MinRequestBodyBytesPerSecond { get; init; } = 4096;
    public TimeSpan MinRequestBodyGrace { get; init; } = TimeSpan.FromSeconds(5);
    public required string Host { get; init; }
    public int? Port { get; init; }
    public int ManagementPort { get; init; } = 3002;
    public required string AnthropicApiKey { get; init; }
    public required Uri AnthropicBaseUrl { get; init; }
    public required byte[] JwtSecret { get; init; }
    public TimeSpan JwtLifetime { get; init; } = TimeSpan.FromHours(24);
    public string JwtIssuer { get; init; } = "claudeproxy";
    public string JwtAudience { get; init; } = "claudeproxy-gateway";
    public string? ProxyBaseUrl { get; init; }
    public int RateLimitMax { get; init; } = 100;
    public TimeSpan RateLimitWindow { get; init; } = TimeSpan.FromMilliseconds(60_000);
    public long MaxPayloadSize { get; init; } = 2 * 1024 * 1024;
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];
    public IReadOnlyList<string> DefaultModels { get; init; } = ["claude-*"];
    public decimal? DefaultSpendCap { get; init; }
    public string OrgId { get; init; } = "default";
    public string? AdminApiKey { get; init; }
    public TimeSpan UpstreamTimeout { get; init; } = TimeSpan.FromMinutes(10);
    public Tokens.DeviceKeyMode DeviceKeys { get; init; } = Tokens.DeviceKeyMode.Optional;
    /// <summary>Requests one device may have in flight on this instance; more are refused before their bodies are read.</summary>
    public int MaxConcurrentRequestsPerDevice { get; init; } = 32;

    public static GatewayOptions Load(IConfiguration config)
    {
        var apiKey = Required(config, "ANTHROPIC_API_KEY");
        var secret = Required(config, "JWT_SECRET");
        SecretPolicy.Require("JWT_SECRET", secret);
        var adminKey = config["ADMIN_API_KEY"] is { Length: > 0 } admin ? admin : null;
        if (adminKey is not null)
        {
            SecretPolicy.Require("ADMIN_API_KEY", adminKey);
        }
        var baseUrl = config["ANTHROPIC_BASE_URL"] is { Length: > 0 } b ? b : "https://api.anthropic.com";
        if (!Uri.TryCreate(baseUrl.TrimEnd('/'), UriKind.Absolute, out var baseUri) || (baseUri.Scheme != "http" && baseUri.Scheme != "https"))
        {
            throw new GatewayConfigurationException("ANTHROPIC_BASE_URL must be an absolute http(s) URL.");
        }
        var upstreamMinutes = Number(config, "UPSTREAM_TIMEOUT_SECONDS", 600, 10, 86_400);
        return new GatewayOptions
        {
            TrustedProxies = Networks(config, "TRUSTED_PROXIES"),
            BootstrapAllowedNetworks = Networks(config, "BOOTSTRAP_ALLOWED_NETWORKS"),
            ShutdownTimeout = TimeSpan.FromSeconds(Number(config, "SHUTDOWN_TIMEOUT_SECONDS", 30, 1, 86_400)),
            MinRequestBodyBytesPerSecond = Number(config, "MIN_REQUEST_BODY_RATE", 4096, 1, 1e9),
            MinRequestBodyGrace = TimeSpan.FromSeconds(Number(config, "MIN_REQUEST_BODY_GRACE_SECONDS", 5, 2, 300)),
            Host = config["HOST"] is { Length: > 0 } h ? h : "0.0.0.0",
            Port = config["PORT"] is { Length: > 0 } ? (int)Number(config, "PORT", 3001, 0, 65_535) : null,
            ManagementPort = (int)Number(config, "MANAGEMENT_PORT", 3002, 0, 65_535),
            AnthropicApiKey = apiKey,
            AnthropicBaseUrl = baseUri,
            JwtSecret = Encoding.UTF8.GetBytes(secret),
            JwtLifetime = TimeSpan.FromHours(Number(config, "JWT_EXPIRATION_HOURS", 24, 0.01, 24 * 365)),
            JwtIssuer = config["JWT_ISSUER"] is { Length: > 0 } iss ? iss : "claudeproxy",
            JwtAudience = config["JWT_AUDIENCE"] is { Length: > 0 } aud ? aud : "claudeproxy-gateway",
            ProxyBaseUrl = config["PROXY_BASE_URL"] is { Length: > 0 } p ? p.TrimEnd('/') : null,
            RateLimitMax = (int)Number(config, "RATE_LIMIT_MAX", 100, 1, 1_000_000),
            RateLimitWindow = TimeSpan.FromMilliseconds(Number(config, "RATE_LIMIT_WINDOW", 60_000, 100, 86_400_000)),
            MaxPayloadSize = Size(config, "MAX_PAYLOAD_SIZE", 2 * 1024 * 1024),
            CorsOrigins = List(config["CORS_ORIGINS"]),
            DefaultModels = config["DEFAULT_MODELS"] is { Length: > 0 } m ? List(m) : ["claude-*"],
            DefaultSpendCap = config["DEFAULT_SPEND_CAP"] is { Length: > 0 } ? (decimal)Number(config, "DEFAULT_SPEND_CAP", 0, 0, 1e9) : null,
            OrgId = config["ORG_ID"] is { Length: > 0 } org ? org : "default",
            AdminApiKey = adminKey,
            UpstreamTimeout = TimeSpan.FromSeconds(upstreamMinutes),
            DeviceKeys = (config["DEVICE_KEYS"]?.Trim().ToLowerInvariant()) switch
            {
                null or "" or "optional" => Tokens.DeviceKeyMode.Optional,
                "required" => Tokens.DeviceKeyMode.Required,
                _ => throw new GatewayConfigurationException("DEVICE_KEYS must be optional or required."),
            },
            MaxConcurrentRequestsPerDevice = (int)Number(config, "MAX_CONCURRENT_REQUESTS_PER_DEVICE", 32, 1, 10_000),
        };
    }

    private static string Required(IConfiguration config, string name) =>
        config[name] is { Length: > 0 } value
            ? value
            : throw new GatewayConfigurationException($"{name} is required but not set.");

    internal static double Number(IConfiguration config, string name, double fallback, double min, double max)
    {
        var raw = config[name];
        if (string.IsNullOrWhiteSpace(raw))
        {
            return fallback;
        }
        if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw new GatewayConfigurationException($"{name} must be a number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}.");
        }
        return value;
    }

    /// <summary>Bytes, or a number with kb/mb/gb (1024-based): "2mb", "512kb", "2097152".</summary>
    internal static long Size(IConfiguration config, string name, long fallback)
    {
        var raw = config[name]?.Trim().ToLowerInvariant();
        if (string.IsNullOrEmpty(raw))
        {
            return fallback;
        }
        long multiplier = 1;
        foreach (var (suffix, factor) in new[] { ("kb", 1024L), ("mb", 1024L * 1024), ("gb", 1024L * 1024 * 1024), ("k", 1024L), ("m", 1024L * 1024), ("b", 1L) })
        {
            if (raw.EndsWith(suffix, StringComparison.Ordinal))
            {
                multiplier = factor;
                raw = raw[..^suffix.Length].Trim();
                break;
            }
        }
        if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value <= 0 || value * multiplier > 1024L * 1024 * 1024)
        {
            throw new GatewayConfigurationException($"{name} must be a size such as 2mb, 512kb or a number of bytes (at most 1gb).");
        }
        return (long)(value * multiplier);
    }

    /// <summary>A comma list of CIDR networks or single addresses: "10.0.0.0/8, 192.168.1.7".</summary>
    internal static IReadOnlyList<System.Net.IPNetwork> Networks(IConfiguration config, string name) =>
        NetworkList.Parse(config[name]) ?? throw new GatewayConfigurationException(NetworkList.Malformed(name));

    internal static IReadOnlyList<string> List(string? raw) =>
        string.IsNullOrWhiteSpace(raw) ? [] : raw.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
