using System.Text;
using ClaudeProxy.Settings;
using S = ClaudeProxy.Settings.SettingsCatalogue;

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
        var settings = config.Settings();
        var apiKey = settings.Text(S.AnthropicApiKey)!;
        var secret = settings.Secret(S.JwtSecret)!;
        var adminKey = settings.Secret(S.AdminApiKey);
        var baseUrl = settings.Text(S.AnthropicBaseUrl)!;
        if (!Uri.TryCreate(baseUrl.TrimEnd('/'), UriKind.Absolute, out var baseUri) || (baseUri.Scheme != "http" && baseUri.Scheme != "https"))
        {
            throw new GatewayConfigurationException($"{S.AnthropicBaseUrl.Name} must be an absolute http(s) URL.");
        }
        var upstreamTimeout = TimeSpan.FromSeconds(settings.Number(S.UpstreamTimeoutSeconds));
        return new GatewayOptions
        {
            TrustedProxies = settings.Networks(S.TrustedProxies),
            BootstrapAllowedNetworks = settings.Networks(S.BootstrapAllowedNetworks),
            ShutdownTimeout = TimeSpan.FromSeconds(settings.Number(S.ShutdownTimeoutSeconds)),
            MinRequestBodyBytesPerSecond = settings.Number(S.MinRequestBodyRate),
            MinRequestBodyGrace = TimeSpan.FromSeconds(settings.Number(S.MinRequestBodyGraceSeconds)),
            Host = settings.Text(S.Host)!,
            Port = (int?)settings.OptionalNumber(S.Port),
            ManagementPort = (int)settings.Number(S.ManagementPort),
            AnthropicApiKey = apiKey,
            AnthropicBaseUrl = baseUri,
            JwtSecret = Encoding.UTF8.GetBytes(secret),
            JwtLifetime = TimeSpan.FromHours(settings.Number(S.JwtExpirationHours)),
            JwtIssuer = settings.Text(S.JwtIssuer)!,
            JwtAudience = settings.Text(S.JwtAudience)!,
            ProxyBaseUrl = settings.Text(S.ProxyBaseUrl)?.TrimEnd('/'),
            RateLimitMax = (int)settings.Number(S.RateLimitMax),
            RateLimitWindow = TimeSpan.FromMilliseconds(settings.Number(S.RateLimitWindow)),
            MaxPayloadSize = settings.Size(S.MaxPayloadSize),
            CorsOrigins = settings.List(S.CorsOrigins),
            DefaultModels = settings.List(S.DefaultModels),
            DefaultSpendCap = (decimal?)settings.OptionalNumber(S.DefaultSpendCap),
            OrgId = settings.Text(S.OrgId)!,
            AdminApiKey = adminKey,
            UpstreamTimeout = upstreamTimeout,
            DeviceKeys = settings.Choice<Tokens.DeviceKeyMode>(S.DeviceKeys),
            MaxConcurrentRequestsPerDevice = (int)settings.Number(S.MaxConcurrentRequestsPerDevice),
        };
    }
}
