using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using StackExchange.Redis;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// Redis and PostgreSQL through Aspire's client integrations (connection from <c>ConnectionStrings:{name}</c>, traces and
/// metrics), each only when configured. The plain <c>REDIS_URL</c> and <c>DATABASE_URL</c> are mapped onto those
/// connection strings. Command traces are recorded only when telemetry is exported: the Redis instrumentation profiles
/// every command, a cost on the request path worth paying only when someone reads the traces.
/// </summary>
public static class BackingServiceExtensions
{
    /// <summary>Adds the <see cref="IConnectionMultiplexer"/> and its health check when Redis is configured; returns whether it did.</summary>
    public static bool AddRedisIfConfigured(this IHostApplicationBuilder builder, string connectionName, HealthStatus failureStatus)
    {
        if (builder.Configuration.GetConnectionString(connectionName) is not { Length: > 0 })
        {
            if (builder.Configuration["REDIS_URL"] is not { Length: > 0 } url)
            {
                return false;
            }
            SetConnectionString(builder, connectionName, ParseRedisUrl(url).ToString(includePassword: true));
        }
        var exporting = builder.ExportsTelemetry();
        // The integration hands the multiplexer the logger factory, and it logs every reconnection step at Information.
        builder.Logging.AddFilter("StackExchange.Redis", LogLevel.Warning);
        builder.AddRedisClient(connectionName,
            settings =>
            {
                // Ours below: degraded rather than unhealthy when the gateway can run on without Redis.
                settings.DisableHealthChecks = true;
                settings.DisableTracing = !exporting;
            },
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
        builder.Services.AddHealthChecks().AddRedis(sp => sp.GetRequiredService<IConnectionMultiplexer>(), name: connectionName,
            failureStatus: failureStatus, tags: ["ready"], timeout: TimeSpan.FromSeconds(2));
        return true;
    }

    /// <summary>
    /// Adds the <see cref="NpgsqlDataSource"/> (the usage writer's COPY needs it), a pooled <typeparamref name="TContext"/>
    /// factory over it with retry on failure, and a health check, when PostgreSQL is configured; returns whether it did.
    /// </summary>
    public static bool AddPostgresIfConfigured<TContext>(this IHostApplicationBuilder builder, string connectionName, HealthStatus failureStatus)
        where TContext : DbContext
    {
        if (builder.Configuration.NpgsqlConnectionString(connectionName) is not { } connectionString)
        {
            return false;
        }
        SetConnectionString(builder, connectionName, connectionString);
        var exporting = builder.ExportsTelemetry();
        // The integration hands Npgsql the logger factory, and Npgsql logs every command at Information.
        builder.Logging.AddFilter("Npgsql", LogLevel.Warning);
        builder.AddNpgsqlDataSource(connectionName,
            settings =>
            {
                settings.DisableHealthChecks = true;
                settings.DisableTracing = !exporting;
            },
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
        builder.Services.AddHealthChecks().AddNpgSql(sp => sp.GetRequiredService<NpgsqlDataSource>(), name: connectionName,
            failureStatus: failureStatus, tags: ["ready"], timeout: TimeSpan.FromSeconds(3));
        return true;
    }

    /// <summary>PostgreSQL's connection string as Npgsql takes it, from <c>ConnectionStrings__{name}</c> or <c>DATABASE_URL</c>; null when neither is set.</summary>
    public static string? NpgsqlConnectionString(this IConfiguration configuration, string connectionName)
    {
        var raw = configuration.GetConnectionString(connectionName) is { Length: > 0 } cs ? cs
            : configuration["DATABASE_URL"] is { Length: > 0 } url ? url
            : null;
        return raw is null ? null : ToNpgsql(raw);
    }

    private static void SetConnectionString(IHostApplicationBuilder builder, string connectionName, string value) =>
        builder.Configuration.AddInMemoryCollection([new($"ConnectionStrings:{connectionName}", value)]);

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
