using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Settings;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using StackExchange.Redis;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// Redis and PostgreSQL through Aspire's client integrations (connection from <c>ConnectionStrings:{name}</c>, traces and
/// metrics), each only when configured. The plain <c>REDIS_URL</c> and <c>DATABASE_URL</c> are mapped onto those
/// connection strings. Command traces are recorded only when telemetry is exported: the Redis instrumentation profiles
/// every command, a cost on the request path worth paying only when someone reads the traces.
/// </summary>
public static class BackingServiceExtensions
{
    /// <summary>
    /// Which of Postgres and Redis are configured, read once and registered: every concern chooses its implementations
    /// from it (with Postgres or without, with Redis or without).
    /// </summary>
    public static BackingServices AddBackingServices(this IHostApplicationBuilder builder)
    {
        if (builder.Properties.TryGetValue(typeof(BackingServices), out var known))
        {
            return (BackingServices)known;
        }
        var settings = builder.Configuration.Settings();
        var backing = new BackingServices(
            Postgres: builder.Configuration.NpgsqlConnectionString() is not null,
            Redis: settings.IsSet(S.RedisConnectionString) || settings.IsSet(S.RedisUrl));
        builder.Properties[typeof(BackingServices)] = backing;
        builder.Services.AddSingleton(backing);
        return backing;
    }

    /// <summary>Adds the <see cref="IConnectionMultiplexer"/> and its health check (Redis must be configured).</summary>
    public static void AddRedis(this IHostApplicationBuilder builder, HealthStatus failureStatus)
    {
        var settings = builder.Configuration.Settings();
        if (!settings.IsSet(S.RedisConnectionString))
        {
            SetConnectionString(builder, S.RedisConnectionString, ParseRedisUrl(settings.Text(S.RedisUrl)!).ToString(includePassword: true));
        }
        // The integration hands the multiplexer the logger factory, and it logs every reconnection step at Information.
        var tracing = builder.QuietClient("StackExchange.Redis");
        builder.AddRedisClient(S.RedisConnectionName,
            // Ours below: degraded rather than unhealthy when the gateway can run on without Redis.
            redis => (redis.DisableHealthChecks, redis.DisableTracing) = (true, !tracing),
            options =>
            {
                // The connection is made in the background: a process starts while Redis is down and reconnects by itself.
                options.AbortOnConnectFail = false;
                options.ConnectTimeout = Math.Min(options.ConnectTimeout, 5000);
                options.SyncTimeout = Math.Min(options.SyncTimeout, 2000);
                options.AsyncTimeout = Math.Min(options.AsyncTimeout, 2000);
                options.ReconnectRetryPolicy = new LinearRetry(500);
                options.ClientName ??= "claudeproxy";
            });
        builder.Services.AddHealthChecks().AddRedis(sp => sp.GetRequiredService<IConnectionMultiplexer>(), name: S.RedisConnectionName,
            failureStatus: failureStatus, tags: ["ready"], timeout: TimeSpan.FromSeconds(2));
    }

    /// <summary>
    /// Adds the <see cref="NpgsqlDataSource"/> (the usage writer's COPY needs it), a pooled <typeparamref name="TContext"/>
    /// factory over it with retry on failure, and a health check (PostgreSQL must be configured).
    /// </summary>
    public static void AddPostgres<TContext>(this IHostApplicationBuilder builder, HealthStatus failureStatus)
        where TContext : DbContext
    {
        SetConnectionString(builder, S.DatabaseConnectionString, builder.Configuration.NpgsqlConnectionString()!);
        // The integration hands Npgsql the logger factory, and Npgsql logs every command at Information.
        var tracing = builder.QuietClient("Npgsql");
        builder.AddNpgsqlDataSource(S.DatabaseConnectionName,
            npgsql => (npgsql.DisableHealthChecks, npgsql.DisableTracing) = (true, !tracing),
            dataSource =>
            {
                if (dataSource.ConnectionStringBuilder.Timeout > 5)
                {
                    dataSource.ConnectionStringBuilder.Timeout = 5;
                }
            });
        // A pooled factory serves singletons; the scoped context comes from the same pool.
        builder.Services.AddPooledDbContextFactory<TContext>((sp, options) => options.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>(), npgsql =>
            npgsql.EnableRetryOnFailure(maxRetryCount: 3, maxRetryDelay: TimeSpan.FromSeconds(2), errorCodesToAdd: null)));
        builder.Services.AddScoped(sp => sp.GetRequiredService<IDbContextFactory<TContext>>().CreateDbContext());
        builder.EnrichNpgsqlDbContext<TContext>(settings =>
        {
            settings.DisableHealthChecks = true;
            // The data source above already records Npgsql's traces and metrics.
            settings.DisableTracing = true;
            settings.DisableMetrics = true;
        });
        builder.Services.AddHealthChecks().AddNpgSql(sp => sp.GetRequiredService<NpgsqlDataSource>(), name: S.DatabaseConnectionName,
            failureStatus: failureStatus, tags: ["ready"], timeout: TimeSpan.FromSeconds(3));
    }

    /// <summary>Keeps a client library's logs to warnings; returns whether its traces are worth recording (telemetry is exported).</summary>
    private static bool QuietClient(this IHostApplicationBuilder builder, string logCategory)
    {
        builder.Logging.AddFilter(logCategory, LogLevel.Warning);
        return builder.ExportsTelemetry();
    }

    /// <summary>PostgreSQL's connection string as Npgsql takes it, from <c>ConnectionStrings__claudeproxydb</c> or <c>DATABASE_URL</c>; null when neither is set.</summary>
    public static string? NpgsqlConnectionString(this IConfiguration configuration)
    {
        var settings = configuration.Settings();
        var raw = settings.IsSet(S.DatabaseConnectionString) ? settings.Text(S.DatabaseConnectionString) : settings.Text(S.DatabaseUrl);
        return raw is null ? null : ToNpgsql(raw);
    }

    private static void SetConnectionString(IHostApplicationBuilder builder, Setting setting, string value) =>
        builder.Configuration.AddInMemoryCollection([new(setting.Key, value)]);

    /// <summary>Accepts <c>postgres://user:password@host:port/db?sslmode=require</c> URIs and Npgsql connection strings.</summary>
    public static string ToNpgsql(string raw)
    {
        if (!raw.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) &&
            !raw.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            return new NpgsqlConnectionStringBuilder(raw).ConnectionString;
        }
        var uri = new Uri(raw);
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host,
            Port = uri.Port > 0 ? uri.Port : 5432,
            Database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')),
        };
        if (uri.UserInfo is { Length: > 0 } userInfo)
        {
            var parts = userInfo.Split(':', 2);
            builder.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length == 2)
            {
                builder.Password = Uri.UnescapeDataString(parts[1]);
            }
        }
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var kv = pair.Split('=', 2);
            var key = Uri.UnescapeDataString(kv[0]);
            var value = kv.Length == 2 ? Uri.UnescapeDataString(kv[1]) : "";
            builder[key.Equals("sslmode", StringComparison.OrdinalIgnoreCase) ? "SSL Mode" : key] = value;
        }
        return builder.ConnectionString;
    }

    /// <summary>Accepts <c>redis://[:password@]host:port[/db]</c>, <c>rediss://</c> and StackExchange.Redis configuration strings.</summary>
    public static ConfigurationOptions ParseRedisUrl(string connectionString)
    {
        if (!connectionString.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) &&
            !connectionString.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase))
        {
            return ConfigurationOptions.Parse(connectionString);
        }
        var uri = new Uri(connectionString);
        var options = new ConfigurationOptions { Ssl = uri.Scheme.Equals("rediss", StringComparison.OrdinalIgnoreCase) };
        options.EndPoints.Add(uri.Host, uri.Port > 0 ? uri.Port : 6379);
        if (uri.UserInfo is { Length: > 0 } userInfo)
        {
            var parts = userInfo.Split(':', 2);
            var user = Uri.UnescapeDataString(parts[0]);
            if (parts.Length == 2)
            {
                options.Password = Uri.UnescapeDataString(parts[1]);
                if (user.Length > 0)
                {
                    options.User = user;
                }
            }
            else
            {
                options.Password = user;
            }
        }
        if (uri.AbsolutePath.Trim('/') is { Length: > 0 } db && int.TryParse(db, out var database))
        {
            options.DefaultDatabase = database;
        }
        return options;
    }
}
