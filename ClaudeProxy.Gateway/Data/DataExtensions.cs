using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Gateway.Usage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ClaudeProxy.Gateway.Data;

public static class DataExtensions
{
    public const string ConnectionName = "claudeproxydb";

    /// <summary>
    /// Postgres when configured: migrations (before anything else starts), device records, the usage writer and
    /// spend history. Without it usage is kept in memory, and the gateway says so at start and in /readyz.
    /// Returns whether Postgres is configured.
    /// </summary>
    public static bool AddData(this IHostApplicationBuilder builder)
    {
        var mode = (builder.Configuration["BOOTSTRAP_MODE"]?.Trim().ToLowerInvariant()) switch
        {
            null or "" or "open" => BootstrapMode.Open,
            "approval" => BootstrapMode.Approval,
            "closed" => BootstrapMode.Closed,
            _ => throw new GatewayConfigurationException("BOOTSTRAP_MODE must be open, approval or closed."),
        };
        builder.Services.AddSingleton(new BootstrapOptions(mode));
        // Degraded, not unhealthy: with Postgres down the gateway still serves, and spools usage to disk.
        if (!builder.AddPostgresIfConfigured<GatewayDbContext>(ConnectionName, HealthStatus.Degraded))
        {
            if (mode != BootstrapMode.Open)
            {
                throw new GatewayConfigurationException($"BOOTSTRAP_MODE={mode.ToString().ToLowerInvariant()} needs a database: set ConnectionStrings__{ConnectionName} or DATABASE_URL.");
            }
            builder.Services.AddHealthChecks().AddCheck("usage", () => HealthCheckResult.Healthy(
                $"no Postgres configured: usage is kept in memory (the latest {InMemoryUsageLog.Capacity} events) and lost on restart"), ["ready"]);
            return false;
        }
        builder.Services.ConfigureDbContext<GatewayDbContext>(GatewayDbContext.UseGatewayNaming);
        builder.Services.AddSingleton<Migrator>();
        builder.Services.AddHostedService<MigrateOnStart>();
        builder.Services.AddSingleton<SchemaHealthCheck>();
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(SchemaHealthCheck.Name,
            sp => sp.GetRequiredService<SchemaHealthCheck>(), HealthStatus.Degraded, ["ready"], TimeSpan.FromSeconds(5)));
        builder.Services.AddSingleton<IDeviceDirectory, PostgresDeviceDirectory>();
        builder.Services.AddSingleton<ISpendHistory, PostgresSpendHistory>();
        builder.Services.AddSingleton<UsageSpool>();
        builder.Services.AddSingleton<UsageWriter>();
        builder.Services.AddSingleton<IUsageSink>(sp => sp.GetRequiredService<UsageWriter>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<UsageWriter>());
        return true;
    }
}
