namespace ClaudeProxy.Settings;

/// <summary>
/// Every setting of the gateway and the admin app, and the platform variables they read. Each is read through
/// <see cref="SettingsReader"/> and nowhere else by its name; README's settings tables list the documented ones
/// with the same defaults (a test compares them).
/// </summary>
public static class SettingsCatalogue
{
    private const SettingComponent Gateway = SettingComponent.Gateway;
    private const SettingComponent AdminApp = SettingComponent.AdminApp;
    private const SettingComponent Both = SettingComponent.Both;

    public const string RedisConnectionName = "redis";
    public const string DatabaseConnectionName = "claudeproxydb";

    // The gateway: upstream and tokens.
    public static readonly Setting AnthropicApiKey = new("ANTHROPIC_API_KEY", Gateway, SettingKind.Text, "The master key; it never leaves the gateway except towards Anthropic.") { Required = true };
    public static readonly Setting JwtSecret = new("JWT_SECRET", Gateway, SettingKind.Secret, "HS256 secret for wrapper tokens, held to the secret policy.") { Required = true };
    public static readonly Setting AnthropicBaseUrl = new("ANTHROPIC_BASE_URL", Gateway, SettingKind.Text, "The upstream, an absolute http(s) URL.") { Default = "https://api.anthropic.com" };
    public static readonly Setting JwtExpirationHours = new("JWT_EXPIRATION_HOURS", Gateway, SettingKind.Number, "Wrapper token lifetime, in hours.") { Default = "24", Min = 0.01, Max = 24 * 365 };
    public static readonly Setting JwtIssuer = new("JWT_ISSUER", Gateway, SettingKind.Text, "Issuer of wrapper tokens, pinned at validation.") { Default = "claudeproxy" };
    public static readonly Setting JwtAudience = new("JWT_AUDIENCE", Gateway, SettingKind.Text, "Audience of wrapper tokens, pinned at validation.") { Default = "claudeproxy-gateway" };
    public static readonly Setting ProxyBaseUrl = new("PROXY_BASE_URL", Gateway, SettingKind.Text, "The proxy_base_url /bootstrap returns.") { WhenUnset = "the request's own scheme and host" };
    public static readonly Setting DeviceKeys = new("DEVICE_KEYS", Gateway, SettingKind.Choice, "Whether every bootstrap and refresh must be signed by an enrolled device key.") { Default = "optional", Choices = ["optional", "required"] };
    public static readonly Setting BootstrapMode = new("BOOTSTRAP_MODE", Gateway, SettingKind.Choice, "Who may bootstrap: anyone, approved devices, or known devices only (the last two need Postgres).") { Default = "open", Choices = ["open", "approval", "closed"] };
    public static readonly Setting BootstrapAllowedNetworks = new("BOOTSTRAP_ALLOWED_NETWORKS", Gateway, SettingKind.Networks, "Networks or addresses allowed to call POST /bootstrap.") { WhenUnset = "unset (anywhere)" };
    public static readonly Setting AdminApiKey = new("ADMIN_API_KEY", Gateway, SettingKind.Secret, "The operator key of the management API, held to the secret policy.") { WhenUnset = "unset (operator endpoints off)" };

    // The gateway: listening and hosting.
    public static readonly Setting Port = new("PORT", Gateway, SettingKind.Number, "The proxy port (unset: the port of ASPNETCORE_URLS, else the default).") { Default = "3001", Min = 0, Max = 65_535 };
    public static readonly Setting Host = new("HOST", Both, SettingKind.Text, "The address to listen on.") { Default = "0.0.0.0" };
    public static readonly Setting ManagementPort = new("MANAGEMENT_PORT", Gateway, SettingKind.Number, "The management API's port.") { Default = "3002", Min = 0, Max = 65_535 };
    public static readonly Setting MaxPayloadSize = new("MAX_PAYLOAD_SIZE", Gateway, SettingKind.Size, "Largest request body: bytes, or with kb/mb/gb (at most 1gb).") { Default = "2mb" };
    public static readonly Setting MinRequestBodyRate = new("MIN_REQUEST_BODY_RATE", Gateway, SettingKind.Number, "Bytes per second a request body must keep up once its grace is over.") { Default = "4096", Min = 1, Max = 1e9 };
    public static readonly Setting MinRequestBodyGraceSeconds = new("MIN_REQUEST_BODY_GRACE_SECONDS", Gateway, SettingKind.Number, "The grace before the body rate counts, in seconds.") { Default = "5", Min = 2, Max = 300 };
    public static readonly Setting ShutdownTimeoutSeconds = new("SHUTDOWN_TIMEOUT_SECONDS", Gateway, SettingKind.Number, "How long a stop may take, in seconds: requests in flight run on and usage is stored within it.") { Default = "30", Min = 1, Max = 86_400 };
    public static readonly Setting UpstreamTimeoutSeconds = new("UPSTREAM_TIMEOUT_SECONDS", Gateway, SettingKind.Number, "How long the upstream may stay silent before the request fails, in seconds.") { Default = "600", Min = 10, Max = 86_400 };
    public static readonly Setting CorsOrigins = new("CORS_ORIGINS", Gateway, SettingKind.List, "Origins allowed to call the gateway from a browser, or *.") { WhenUnset = "unset (no CORS)" };
    public static readonly Setting TrustedProxies = new("TRUSTED_PROXIES", Both, SettingKind.Networks, "Networks or addresses whose X-Forwarded-For, -Proto and -Host are believed.") { WhenUnset = "unset (none)" };
    public static readonly Setting LogLevel = new("LOG_LEVEL", Gateway, SettingKind.Text, "trace, debug, info, warn, error, fatal or silent.") { Default = "info" };

    // The gateway: devices and limits.
    public static readonly Setting RateLimitMax = new("RATE_LIMIT_MAX", Gateway, SettingKind.Number, "Default requests per window for a device.") { Default = "100", Min = 1, Max = 1_000_000 };
    public static readonly Setting RateLimitWindow = new("RATE_LIMIT_WINDOW", Gateway, SettingKind.Number, "The rate limit window, in milliseconds.") { Default = "60000", Min = 100, Max = 86_400_000 };
    public static readonly Setting MaxConcurrentRequestsPerDevice = new("MAX_CONCURRENT_REQUESTS_PER_DEVICE", Gateway, SettingKind.Number, "Requests one device may have in flight on one instance.") { Default = "32", Min = 1, Max = 10_000 };
    public static readonly Setting DefaultModels = new("DEFAULT_MODELS", Gateway, SettingKind.List, "Model globs a new device may use.") { Default = "claude-*" };
    public static readonly Setting DefaultSpendCap = new("DEFAULT_SPEND_CAP", Gateway, SettingKind.Number, "USD per spend period for a new device.") { WhenUnset = "unset (no cap)", Min = 0, Max = 1e9 };
    public static readonly Setting OrgId = new("ORG_ID", Gateway, SettingKind.Text, "Organisation recorded for devices.") { Default = "default" };
    public static readonly Setting RedisFailureMode = new("REDIS_FAILURE_MODE", Gateway, SettingKind.Choice, "open: in-process limits while Redis is down; closed: refuse with 503.") { Default = "open", Choices = ["open", "closed"] };
    public static readonly Setting RedisFailOpenInstances = new("REDIS_FAILOPEN_INSTANCES", Gateway, SettingKind.Number, "Instances that split a device's remaining spend while Redis is down.") { WhenUnset = "unset (counted from heartbeats, else 2)", Min = 1, Max = 10_000 };
    public static readonly Setting TokenLimitPerMinute = new("TOKEN_LIMIT_PER_MINUTE", Gateway, SettingKind.Number, "Default token budget per device per minute.") { WhenUnset = "unset (off)", Min = 1, Max = 1e9 };
    public static readonly Setting BootstrapRateLimit = new("BOOTSTRAP_RATE_LIMIT", Gateway, SettingKind.Number, "/bootstrap calls per client address, and /refresh calls per device, per minute.") { Default = "20", Min = 1, Max = 1_000_000 };
    public static readonly Setting SettlementDelayMs = new("SETTLEMENT_DELAY_MS", Gateway, SettingKind.Number, "How long a request's settlement waits to ride on its device's next admission before it goes to Redis alone; 0 sends each at once.") { Default = "2", Min = 0, Max = 1000 };
    public static readonly Setting SpendCapPeriod = new("SPEND_CAP_PERIOD", Gateway, SettingKind.Choice, "The spend period, in UTC.") { Default = "month", Choices = ["day", "week", "month"] };

    // The gateway: the upstream circuit breaker.
    public static readonly Setting BreakerFailureRatio = new("BREAKER_FAILURE_RATIO", Gateway, SettingKind.Number, "Share of failed upstream calls that opens the breaker.") { Default = "0.5", Min = 0.01, Max = 1 };
    public static readonly Setting BreakerMinimumThroughput = new("BREAKER_MINIMUM_THROUGHPUT", Gateway, SettingKind.Number, "Calls needed in the sampling window before the ratio counts.") { Default = "10", Min = 2, Max = 1_000_000 };
    public static readonly Setting BreakerSamplingSeconds = new("BREAKER_SAMPLING_SECONDS", Gateway, SettingKind.Number, "The sampling window, in seconds.") { Default = "30", Min = 0.5, Max = 86_400 };
    public static readonly Setting BreakerBreakSeconds = new("BREAKER_BREAK_SECONDS", Gateway, SettingKind.Number, "How long the breaker stays open before a probe, in seconds.") { Default = "30", Min = 0.5, Max = 86_400 };

    // The gateway: Redis, Postgres and usage.
    public static readonly Setting RedisUrl = new("REDIS_URL", Gateway, SettingKind.Text, "redis://[:password@]host:port[/db], rediss://..., or a StackExchange.Redis configuration string.") { WhenUnset = "unset (in-process limits)" };
    public static readonly Setting RedisConnectionString = new("ConnectionStrings__" + RedisConnectionName, Gateway, SettingKind.Text, "Redis, as Aspire sets it; wins over REDIS_URL.") { WhenUnset = "unset (in-process limits)" };
    public static readonly Setting DatabaseUrl = new("DATABASE_URL", Gateway, SettingKind.Text, "postgres://user:password@host:port/db or an Npgsql connection string.") { WhenUnset = "unset (usage in memory)" };
    public static readonly Setting DatabaseConnectionString = new("ConnectionStrings__" + DatabaseConnectionName, Gateway, SettingKind.Text, "PostgreSQL, as Aspire sets it; wins over DATABASE_URL.") { WhenUnset = "unset (usage in memory)" };
    public static readonly Setting MigrateOnStart = new("MIGRATE_ON_START", Gateway, SettingKind.Text, "Apply migrations at start (anything but false does).") { Default = "true" };
    public static readonly Setting PricingFile = new("PRICING_FILE", Gateway, SettingKind.Text, "Prices per model family.") { WhenUnset = "the shipped `Usage/pricing.json`" };
    public static readonly Setting UsageSpoolDir = new("USAGE_SPOOL_DIR", Gateway, SettingKind.Text, "Where usage waits on disk while Postgres is down.")
    {
        WhenUnset = "`$XDG_STATE_HOME/claudeproxy/{fingerprint}`, `~/.local/state/claudeproxy/{fingerprint}` or `$TMPDIR/claudeproxy-{uid}/{fingerprint}`",
    };
    public static readonly Setting UsageFlushMs = new("USAGE_FLUSH_MS", Gateway, SettingKind.Number, "Longest time an event waits before its batch is written, in milliseconds.") { Default = "250", Min = 10, Max = 1000 };

    // Gateway: events and webhooks.
    public static readonly Setting WebhookPollMs = new("WEBHOOK_POLL_MS", Gateway, SettingKind.Number, "How often each instance looks for webhook deliveries that are due, in milliseconds (it also wakes at once when an event is stored).") { Default = "5000", Min = 10, Max = 600_000 };
    public static readonly Setting WebhookRetryInitialMs = new("WEBHOOK_RETRY_INITIAL_MS", Gateway, SettingKind.Number, "Wait before the first retry of a failed webhook delivery, in milliseconds; it doubles with each attempt.") { Default = "30000", Min = 10, Max = 86_400_000 };
    public static readonly Setting WebhookRetryMaxMs = new("WEBHOOK_RETRY_MAX_MS", Gateway, SettingKind.Number, "Longest wait between two attempts of a webhook delivery, in milliseconds.") { Default = "3600000", Min = 10, Max = 86_400_000 };
    public static readonly Setting WebhookRetryHours = new("WEBHOOK_RETRY_HOURS", Gateway, SettingKind.Number, "How long a webhook delivery is retried before it is marked failed, in hours.") { Default = "24", Min = 0.0001, Max = 720 };
    public static readonly Setting WebhookTimeoutSeconds = new("WEBHOOK_TIMEOUT_SECONDS", Gateway, SettingKind.Number, "How long one webhook attempt may take, connecting and answering, in seconds.") { Default = "10", Min = 1, Max = 120 };

    // Both: sign-in with the company's identity provider.
    public static readonly Setting OidcAuthority = new("OIDC_AUTHORITY", Both, SettingKind.Text, "The OpenID Connect provider people sign in with (its issuer URL; discovery is read from it).") { WhenUnset = "unset (no sign-in; under the AppHost, the development provider)" };
    public static readonly Setting OidcClientId = new("OIDC_CLIENT_ID", Both, SettingKind.Text, "The client id registered at the provider.") { WhenUnset = "required with OIDC_AUTHORITY" };
    public static readonly Setting OidcClientSecret = new("OIDC_CLIENT_SECRET", Both, SettingKind.Text, "The client secret registered at the provider.") { WhenUnset = "unset (a public client with PKCE)" };
    public static readonly Setting OidcGroupsClaim = new("OIDC_GROUPS_CLAIM", Both, SettingKind.Text, "The claim of the ID token or userinfo that lists a person's groups.") { Default = "groups" };
    public static readonly Setting OidcScopes = new("OIDC_SCOPES", Both, SettingKind.List, "Scopes asked of the provider.") { Default = "openid,profile,email,offline_access" };

    // The gateway: sign-in sessions.
    public static readonly Setting UserTokenLifetimeSeconds = new("USER_TOKEN_LIFETIME_SECONDS", Gateway, SettingKind.Number, "Lifetime of a signed-in person's access token, in seconds.") { Default = "3600", Min = 60, Max = 86_400 };
    public static readonly Setting RefreshTokenLifetimeDays = new("REFRESH_TOKEN_LIFETIME_DAYS", Gateway, SettingKind.Number, "How long a sign-in lasts without use, in days (each refresh starts it again).") { Default = "14", Min = 0.01, Max = 365 };
    public static readonly Setting DeviceCodeLifetimeSeconds = new("DEVICE_CODE_LIFETIME_SECONDS", Gateway, SettingKind.Number, "How long a sign-in code may wait for the person, in seconds.") { Default = "600", Min = 30, Max = 3600 };
    public static readonly Setting SignInRateLimit = new("SIGN_IN_RATE_LIMIT", Gateway, SettingKind.Number, "Sign-in codes asked for, and verification pages posted, per client address per minute.") { Default = "20", Min = 1, Max = 1_000_000 };

    // Both: telemetry.
    public static readonly Setting OtelExporterOtlpEndpoint = new("OTEL_EXPORTER_OTLP_ENDPOINT", Both, SettingKind.Text, "OpenTelemetry export of logs, metrics and traces.") { WhenUnset = "unset" };
    public static readonly Setting OtelServiceName = new("OTEL_SERVICE_NAME", Both, SettingKind.Text, "The service name in exported telemetry (read by OpenTelemetry).") { WhenUnset = "unset" };

    // The admin app.
    public static readonly Setting AdminAppApiKey = new("ADMIN_API_KEY", AdminApp, SettingKind.Text, "The gateway's operator key, sent to the management API.") { Required = true };
    public static readonly Setting AdminPasswordHash = new("ADMIN_PASSWORD_HASH", AdminApp, SettingKind.Text, "The sign-in password's hash (this one or ADMIN_PASSWORD is required).") { WhenUnset = "required" };
    public static readonly Setting AdminPassword = new("ADMIN_PASSWORD", AdminApp, SettingKind.Text, "The sign-in password itself, for local use.") { WhenUnset = "required" };
    public static readonly Setting AdminUsername = new("ADMIN_USERNAME", AdminApp, SettingKind.Text, "The sign-in user.") { Default = "admin" };
    public static readonly Setting GatewayManagementUrl = new("GATEWAY_MANAGEMENT_URL", AdminApp, SettingKind.Text, "The gateway's management API (the default is resolved by service discovery).") { Default = "http://_management.gateway" };
    public static readonly Setting DataProtectionKeysDir = new("DATA_PROTECTION_KEYS_DIR", AdminApp, SettingKind.Text, "Folder of the keys that protect the sign-in and antiforgery cookies.")
    {
        WhenUnset = "unset (keys in the default place, possibly memory: sign-ins are lost on restart and not shared between pods; a warning at start)",
    };
    public static readonly Setting AdminSecureCookies = new("ADMIN_SECURE_COOKIES", AdminApp, SettingKind.Boolean, "Every cookie the app sets is Secure.") { Default = "false" };
    public static readonly Setting OidcAdminGroup = new("OIDC_ADMIN_GROUP", AdminApp, SettingKind.Text, "Members of this group sign in to the admin app as operators with the identity provider.") { WhenUnset = "unset (no operator signs in with the provider)" };
    public static readonly Setting AdminPasswordLogin = new("ADMIN_PASSWORD_LOGIN", AdminApp, SettingKind.Boolean, "The password sign-in is offered (turn it off once operators sign in with the provider).") { Default = "true" };
    public static readonly Setting AdminPort = new("PORT", AdminApp, SettingKind.Text, "The admin app's port, when ASPNETCORE_URLS does not say.") { WhenUnset = "unset (`ASPNETCORE_URLS`)" };

    // The platform's own variables.
    public static readonly Setting AspNetCoreUrls = new("ASPNETCORE_URLS", Both, SettingKind.Text, "The URLs ASP.NET Core listens on (an Aspire AppHost sets it).") { Documented = false };
    public static readonly Setting Urls = new("urls", Both, SettingKind.Text, "The --urls command line argument.") { Documented = false };
    public static readonly Setting XdgStateHome = new("XDG_STATE_HOME", Gateway, SettingKind.Text, "The user's state folder.") { Documented = false };
    public static readonly Setting Home = new("HOME", Gateway, SettingKind.Text, "The user's home folder.") { Documented = false };
    public static readonly Setting TmpDir = new("TMPDIR", Gateway, SettingKind.Text, "The temporary folder.") { Documented = false };

    public static readonly IReadOnlyList<Setting> All =
    [
        AnthropicApiKey, JwtSecret, AnthropicBaseUrl, JwtExpirationHours, JwtIssuer, JwtAudience, ProxyBaseUrl, DeviceKeys, BootstrapMode,
        BootstrapAllowedNetworks, AdminApiKey, Port, Host, ManagementPort, MaxPayloadSize, MinRequestBodyRate, MinRequestBodyGraceSeconds,
        ShutdownTimeoutSeconds, UpstreamTimeoutSeconds, CorsOrigins, TrustedProxies, LogLevel, RateLimitMax, RateLimitWindow,
        MaxConcurrentRequestsPerDevice, DefaultModels, DefaultSpendCap, OrgId, RedisFailureMode, RedisFailOpenInstances, TokenLimitPerMinute, SettlementDelayMs,
        BootstrapRateLimit, SpendCapPeriod, BreakerFailureRatio, BreakerMinimumThroughput, BreakerSamplingSeconds, BreakerBreakSeconds,
        RedisUrl, RedisConnectionString, DatabaseUrl, DatabaseConnectionString, MigrateOnStart, PricingFile, UsageSpoolDir, UsageFlushMs,
        WebhookPollMs, WebhookRetryInitialMs, WebhookRetryMaxMs, WebhookRetryHours, WebhookTimeoutSeconds,
        OtelExporterOtlpEndpoint, OtelServiceName, AdminAppApiKey, AdminPasswordHash, AdminPassword, AdminUsername, GatewayManagementUrl,
        DataProtectionKeysDir, AdminSecureCookies, OidcAuthority, OidcClientId, OidcClientSecret, OidcGroupsClaim, OidcScopes,
        UserTokenLifetimeSeconds, RefreshTokenLifetimeDays, DeviceCodeLifetimeSeconds, SignInRateLimit, OidcAdminGroup, AdminPasswordLogin, AdminPort, AspNetCoreUrls, Urls, XdgStateHome, Home, TmpDir,
    ];
}
