using ClaudeProxy.Gateway.Configuration;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace ClaudeProxy.Gateway.Data;

/// <summary>
/// Applies the schema migrations under a Postgres advisory lock, so replicas starting together take turns and
/// the later ones find nothing left to do.
/// </summary>
public sealed partial class Migrator(NpgsqlDataSource dataSource, IDbContextFactory<GatewayDbContext> contexts, ILogger<Migrator> logger)
{
    private const long LockKey = 0x436c617564655078; // "ClaudePx"

    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using (var take = new NpgsqlCommand("SELECT pg_advisory_lock(@key)", connection))
        {
            take.Parameters.AddWithValue("key", LockKey);
            await take.ExecuteNonQueryAsync(cancellationToken);
        }
        try
        {
            await using var context = await contexts.CreateDbContextAsync(cancellationToken);
            var pending = (await context.Database.GetPendingMigrationsAsync(cancellationToken)).ToList();
            if (pending.Count > 0)
            {
                await context.Database.MigrateAsync(cancellationToken);
                LogMigrated(logger, string.Join(", ", pending));
            }
        }
        finally
        {
            await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock(@key)", connection);
            release.Parameters.AddWithValue("key", LockKey);
            await release.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Applied database migrations: {Migrations}")]
    private static partial void LogMigrated(ILogger logger, string migrations);
}

/// <summary>Migrates at start unless <c>MIGRATE_ON_START=false</c> (then a Job runs <c>ClaudeProxy.Gateway migrate</c>).</summary>
public sealed class MigrateOnStart(Migrator migrator, IConfiguration configuration) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) =>
        string.Equals(configuration.Settings().Text(Settings.SettingsCatalogue.MigrateOnStart), "false", StringComparison.OrdinalIgnoreCase)
            ? Task.CompletedTask
            : migrator.MigrateAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
