using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Telemetry;
using Npgsql;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// Stores raised events in Postgres and fans each newly stored one out to the webhooks that want it, in one statement:
/// an event whose dedup key is already stored (another instance saw the same crossing) inserts nothing and creates no
/// delivery. While Postgres is down the batch in hand is kept and retried with backoff, and the queue behind it fills
/// up to <see cref="GatewayEvents.Capacity"/>; each event keeps the time it was raised at.
/// </summary>
public sealed partial class EventWriter(GatewayEvents events, NpgsqlDataSource dataSource, DeliverySignal signal, WebhookOptions options,
    BackgroundHealth health, TimeProvider time, ILogger<EventWriter> logger) : BackgroundService
{
    public const string Service = "event-writer";
    private const int MaxBatch = 200;
    private readonly Progress _stored = new();

    internal const string InsertSql = """
        WITH stored AS (
            INSERT INTO gateway_events (id, type, time, instance, dedup_key, data)
            VALUES (@id, @type, @time, @instance, @dedup, @data::jsonb)
            ON CONFLICT (dedup_key) DO NOTHING
            RETURNING id)
        INSERT INTO webhook_deliveries (webhook_id, event_id, status, attempts, next_attempt_at, retry_until, created_at)
        SELECT w.webhook_id, stored.id, 'pending', 0, @now, @until, @now
        FROM stored JOIN webhook_endpoints w ON w.enabled AND (@type = ANY (w.events) OR '*' = ANY (w.events))
        ON CONFLICT (webhook_id, event_id) DO NOTHING
        """;

    /// <summary>Events taken off the queue and stored (or found stored already) since start.</summary>
    public long Stored => _stored.Value;

    /// <summary>Completes when at least <paramref name="count"/> events have been handled.</summary>
    public Task WaitForStoredAsync(long count) => _stored.WaitFor(count);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<GatewayEvent>(MaxBatch);
        var backoff = new Backoff(TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(15));
        var reader = events.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                while (batch.Count < MaxBatch && reader.TryRead(out var next))
                {
                    batch.Add(next);
                }
                try
                {
                    await StoreAsync(batch, stoppingToken);
                    _stored.Add(batch.Count);
                    batch.Clear();
                    backoff.Reset();
                    if (health.Succeeded(Service))
                    {
                        LogBack(logger);
                    }
                    await signal.WakeEverywhereAsync(stoppingToken);
                }
                catch (Exception e) when (!stoppingToken.IsCancellationRequested)
                {
                    if (health.Failed(Service, e))
                    {
                        LogFailed(logger, batch.Count, BackgroundHealth.Describe(e));
                    }
                    await Task.Delay(backoff.Next(), time, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task StoreAsync(List<GatewayEvent> batch, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var now = time.GetUtcNow();
        foreach (var e in batch)
        {
            await using var command = new NpgsqlCommand(InsertSql, connection, transaction);
            command.Parameters.AddWithValue("id", e.Id);
            command.Parameters.AddWithValue("type", e.Type);
            command.Parameters.AddWithValue("time", e.Time);
            command.Parameters.AddWithValue("instance", e.Instance);
            command.Parameters.AddWithValue("dedup", (object?)e.DedupKey ?? DBNull.Value);
            command.Parameters.AddWithValue("data", e.Data);
            command.Parameters.AddWithValue("now", now);
            command.Parameters.AddWithValue("until", now + options.RetryWindow);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Events cannot be stored ({Reason}): {Count} in hand and the queue behind them wait in memory, with their time, until Postgres takes them")]
    private static partial void LogFailed(ILogger logger, int count, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Events are stored again")]
    private static partial void LogBack(ILogger logger);
}
