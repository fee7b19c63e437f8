using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ClaudeProxy.Gateway.Data;

/// <summary>
/// The <c>/readyz</c> entry for the database schema: not ready while the database lacks migrations this build needs
/// (with <c>MIGRATE_ON_START=false</c>, until the migrate Job has run). Once the schema matches it is remembered and
/// Postgres is not asked again. A database ahead of this build (a newer one migrated it) and a Postgres that cannot be
/// reached are degraded, not unready: the gateway serves on, as it does whenever Postgres is down. Asked by probes
/// only, never by requests.
/// </summary>
public sealed class SchemaHealthCheck(IDbContextFactory<GatewayDbContext> contexts) : IHealthCheck
{
    public const string Name = "schema";
    // One probe's worth: the context retries failed connections, and a probe must not wait for all of that.
    private static readonly TimeSpan QueryTimeout = TimeSpan.FromSeconds(3);
    private volatile bool _matched;

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (_matched)
        {
            return HealthCheckResult.Healthy("database schema matches this build");
        }
        List<string> known, applied;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(QueryTimeout);
            await using var db = await contexts.CreateDbContextAsync(timeout.Token);
            known = [.. db.Database.GetMigrations()];
            // The history repository directly: no retrying execution strategy around it, the probe's timeout is the limit.
            applied = [.. (await db.GetService<IHistoryRepository>().GetAppliedMigrationsAsync(timeout.Token)).Select(m => m.MigrationId)];
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Degraded($"cannot check the schema: {Telemetry.BackgroundHealth.Describe(e)}");
        }
        var pending = known.Except(applied, StringComparer.Ordinal).Count();
        var unknown = applied.Except(known, StringComparer.Ordinal).ToList();
        if (pending > 0)
        {
            return HealthCheckResult.Unhealthy($"database schema is behind this build: {pending} migration{(pending == 1 ? "" : "s")} pending (run migrate)");
        }
        if (unknown.Count > 0)
        {
            return HealthCheckResult.Degraded($"database schema is ahead of this build: {unknown.Count} migration{(unknown.Count == 1 ? "" : "s")} this build does not know ({string.Join(", ", unknown)}); serving on");
        }
        _matched = true;
        return HealthCheckResult.Healthy("database schema matches this build");
    }
}
