using ClaudeProxy.Gateway.Configuration;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ClaudeProxy.Gateway.Data;

public static class DataExtensions
{
    public const string ConnectionName = Settings.SettingsCatalogue.DatabaseConnectionName;

    /// <summary>
    /// Postgres when configured: its client, and migrations applied before anything else starts. The concerns that
    /// keep their records there (devices, spend history, usage) register their Postgres implementations themselves.
    /// </summary>
    public static IHostApplicationBuilder AddData(this IHostApplicationBuilder builder)
    {
        if (!builder.AddBackingServices().Postgres)
        {
            return builder;
        }
        // Degraded, not unhealthy: with Postgres down the gateway still serves, and spools usage to disk.
        builder.AddPostgres<GatewayDbContext>(HealthStatus.Degraded);
        builder.Services.ConfigureDbContext<GatewayDbContext>(GatewayDbContext.UseGatewayNaming);
        builder.Services.AddSingleton<Migrator>();
        builder.Services.AddHostedService<MigrateOnStart>();
        builder.Services.AddSingleton<SchemaHealthCheck>();
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(SchemaHealthCheck.Name,
            sp => sp.GetRequiredService<SchemaHealthCheck>(), HealthStatus.Degraded, ["ready"], TimeSpan.FromSeconds(5)));
        return builder;
    }
}
