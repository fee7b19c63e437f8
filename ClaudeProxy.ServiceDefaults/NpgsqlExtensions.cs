using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// Registers PostgreSQL the way Aspire's Npgsql EF Core integration does: one <see cref="NpgsqlDataSource"/>, a
/// pooled DbContext with retry on failure, a health check, and Npgsql's traces and metrics.
/// </summary>
public static class NpgsqlExtensions
{
    /// <summary>The Npgsql connection string from <c>ConnectionStrings:{name}</c> or <c>DATABASE_URL</c>, or null.</summary>
    public static string? NpgsqlConnectionString(this IConfiguration configuration, string connectionName)
    {
        var raw = configuration.GetConnectionString(connectionName) is { Length: > 0 } cs ? cs
            : configuration["DATABASE_URL"] is { Length: > 0 } url ? url
            : null;
        return raw is null ? null : ToNpgsql(raw);
    }

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

    /// <summary>Adds the data source, the pooled context and the health check when a connection string is configured; returns whether it did.</summary>
    public static bool AddNpgsqlDbContext<TContext>(this IHostApplicationBuilder builder, string connectionName,
        HealthStatus failureStatus = HealthStatus.Unhealthy) where TContext : DbContext
    {
        if (builder.Configuration.NpgsqlConnectionString(connectionName) is not { } connectionString)
        {
            return false;
        }
        var csb = new NpgsqlConnectionStringBuilder(connectionString);
        if (csb.Timeout > 5)
        {
            csb.Timeout = 5;
        }
        builder.Services.AddSingleton(_ => new NpgsqlDataSourceBuilder(csb.ConnectionString).Build());
        // A pooled factory serves singletons; the scoped context comes from the same pool.
        builder.Services.AddPooledDbContextFactory<TContext>((sp, options) => options.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>(), npgsql =>
            npgsql.EnableRetryOnFailure(maxRetryCount: 3, maxRetryDelay: TimeSpan.FromSeconds(2), errorCodesToAdd: null)));
        builder.Services.AddScoped(sp => sp.GetRequiredService<IDbContextFactory<TContext>>().CreateDbContext());
        builder.Services.AddHealthChecks().AddNpgSql(sp => sp.GetRequiredService<NpgsqlDataSource>(), name: connectionName,
            failureStatus: failureStatus, tags: ["ready"], timeout: TimeSpan.FromSeconds(3));
        var otel = builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter("Npgsql"));
        if (builder.ExportsTelemetry())
        {
            otel.WithTracing(t => t.AddNpgsql());
        }
        return true;
    }
}
