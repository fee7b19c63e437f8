using ClaudeProxy.Gateway.Telemetry;
using Npgsql;
using NpgsqlTypes;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// Stores the refusals counted in process (<see cref="RefusalCounts"/>) into <c>refusal_rollups</c> every few seconds, by
/// additive upsert into the hour of the flush, so every instance adds its own. Counts Postgres cannot take are put back
/// and stored with the next flush; the counts of the last interval are lost if the process dies without stopping.
/// </summary>
public sealed partial class RefusalRollupWriter(NpgsqlDataSource dataSource, GatewayMetrics metrics, BackgroundHealth health, TimeProvider time,
    ILogger<RefusalRollupWriter> logger) : BackgroundService
{
    public const string Service = "refusal-rollups";
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);
    private const string Upsert =
        "INSERT INTO refusal_rollups AS r (bucket_start, reason, requests) SELECT @bucket, reason, n FROM unnest(@reasons, @counts) AS t(reason, n) " +
        "ON CONFLICT (bucket_start, reason) DO UPDATE SET requests = r.requests + EXCLUDED.requests";
    private readonly SemaphoreSlim _one = new(1, 1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                await FlushAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        try
        {
            await FlushAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The stop's time is up: the counts of the last interval are lost, as when the process dies.
        }
    }

    /// <summary>Stores what was counted since the last flush; returns false (and keeps the counts) when Postgres could not take them.</summary>
    public async Task<bool> FlushAsync(CancellationToken cancellationToken)
    {
        await _one.WaitAsync(cancellationToken);
        try
        {
            var counts = metrics.Refusals.Take();
            if (counts.Count == 0)
            {
                return true;
            }
            var now = time.GetUtcNow();
            try
            {
                await using var command = dataSource.CreateCommand(Upsert);
                command.Parameters.AddWithValue("bucket", new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, 0, 0, TimeSpan.Zero));
                command.Parameters.Add(new NpgsqlParameter("reasons", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = counts.ConvertAll(c => c.Key).ToArray() });
                command.Parameters.Add(new NpgsqlParameter("counts", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { Value = counts.ConvertAll(c => c.Value).ToArray() });
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (Exception e)
            {
                metrics.Refusals.Restore(counts);
                if (health.Failed(Service, e))
                {
                    LogFailed(logger, BackgroundHealth.Describe(e));
                }
                return false;
            }
            if (health.Succeeded(Service))
            {
                LogBack(logger);
            }
            return true;
        }
        finally
        {
            _one.Release();
        }
    }

    public override void Dispose()
    {
        _one.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refusal counts cannot be stored ({Reason}): they are kept in memory and stored when Postgres takes them")]
    private static partial void LogFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Refusal counts are stored again")]
    private static partial void LogBack(ILogger logger);
}
