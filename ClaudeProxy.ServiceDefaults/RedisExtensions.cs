using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// Registers Redis the way Aspire's Redis client integration does: one <see cref="IConnectionMultiplexer"/> from
/// <c>ConnectionStrings:{name}</c> (or <c>REDIS_URL</c>), <c>AbortOnConnectFail=false</c>, and a health check.
/// </summary>
public static class RedisExtensions
{
    /// <summary>The connection string for Redis, or null when none is configured.</summary>
    public static string? RedisConnectionString(this IConfiguration configuration, string connectionName = "redis") =>
        configuration.GetConnectionString(connectionName) is { Length: > 0 } cs ? cs
        : configuration["REDIS_URL"] is { Length: > 0 } url ? url
        : null;

    /// <summary>
    /// Adds the multiplexer when a connection string is configured and returns whether it did. The connection is
    /// made in the background: a process starts while Redis is down and reconnects by itself.
    /// </summary>
    public static bool AddRedisClient(this IHostApplicationBuilder builder, string connectionName = "redis",
        HealthStatus failureStatus = HealthStatus.Unhealthy)
    {
        if (builder.Configuration.RedisConnectionString(connectionName) is not { } connectionString)
        {
            return false;
        }
        var options = ParseRedisConfiguration(connectionString);
        builder.Services.AddSingleton<IConnectionMultiplexer>(_ => ConnectionMultiplexer.Connect(options));
        builder.Services.AddHealthChecks().AddRedis(sp => sp.GetRequiredService<IConnectionMultiplexer>(), name: connectionName,
            failureStatus: failureStatus, tags: ["ready"], timeout: TimeSpan.FromSeconds(2));
        return true;
    }

    /// <summary>Accepts <c>redis://[:password@]host:port[/db]</c>, <c>rediss://</c> and StackExchange.Redis configuration strings.</summary>
    public static ConfigurationOptions ParseRedisConfiguration(string connectionString)
    {
        ConfigurationOptions options;
        if (connectionString.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) ||
            connectionString.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase))
        {
            var uri = new Uri(connectionString);
            options = new ConfigurationOptions { Ssl = uri.Scheme.Equals("rediss", StringComparison.OrdinalIgnoreCase) };
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
        }
        else
        {
            options = ConfigurationOptions.Parse(connectionString);
        }
        options.AbortOnConnectFail = false;
        options.ConnectTimeout = Math.Min(options.ConnectTimeout, 5000);
        options.SyncTimeout = Math.Min(options.SyncTimeout, 2000);
        options.AsyncTimeout = Math.Min(options.AsyncTimeout, 2000);
        options.ReconnectRetryPolicy = new LinearRetry(500);
        options.ClientName ??= "claudeproxy";
        return options;
    }
}
