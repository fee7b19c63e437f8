using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using ClaudeProxy.Gateway.Telemetry;
using Npgsql;
using NpgsqlTypes;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// Usage events go onto a bounded channel (the request path never waits); this writer takes them in batches and
/// inserts each batch with binary COPY into a staging table, then moves it into <c>usage_events</c> idempotently
/// (by event id) and updates the hourly and daily rollups, in one transaction. When Postgres is down, batches go to
/// an append-only spool file, flushed to disk, and are replayed when it returns: each event is stored exactly once.
/// On shutdown the writer drains the channel.
/// </summary>
public sealed partial class UsageWriter : BackgroundService, IUsageSink
{
    private const int MaxBatch = 2000;
    private readonly Channel<UsageEvent> _channel = Channel.CreateBounded<UsageEvent>(new BoundedChannelOptions(100_000)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });
    private readonly NpgsqlDataSource _dataSource;
    private readonly UsageSpool _spool;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger<UsageWriter> _logger;
    private readonly TimeSpan _flushInterval;
    private bool _databaseDown;
    private bool _spooledWhileUp;

    public UsageWriter(NpgsqlDataSource dataSource, UsageSpool spool, GatewayMetrics metrics, ILogger<UsageWriter> logger, IConfiguration configuration)
    {
        _dataSource = dataSource;
        _spool = spool;
        _metrics = metrics;
        _logger = logger;
        var ms = Configuration.GatewayOptions.Number(configuration, "USAGE_FLUSH_MS", 250, 10, 1000);
        _flushInterval = TimeSpan.FromMilliseconds(ms);
    }

    private readonly List<(long Count, TaskCompletionSource Done)> _waiters = [];
    private long _stored;

    /// <summary>Events written to Postgres since start.</summary>
    public long Stored => Interlocked.Read(ref _stored);

    /// <summary>Completes once at least <paramref name="count"/> events have been written since start.</summary>
    public Task WaitForStoredAsync(long count)
    {
        lock (_waiters)
        {
            if (Stored >= count)
            {
                return Task.CompletedTask;
            }
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((count, done));
            return done.Task;
        }
    }

    private void NotifyStored(int added)
    {
        var stored = Interlocked.Add(ref _stored, added);
        lock (_waiters)
        {
            foreach (var (_, done) in _waiters.Where(w => w.Count <= stored))
            {
                done.TrySetResult();
            }
            _waiters.RemoveAll(w => w.Count <= stored);
        }
    }

    public void Enqueue(UsageEvent usage)
    {
        if (!_channel.Writer.TryWrite(usage))
        {
            // The channel is full (Postgres far behind) or closed (shutting down): the disk keeps it, and the
            // writer replays it once it has caught up.
            _spool.Append([usage]);
            _metrics.Spooled(1);
            Volatile.Write(ref _spooledWhileUp, true);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<UsageEvent>(MaxBatch);
        var reader = _channel.Reader;
        await ReplayAsync();
        while (true)
        {
            bool more;
            try
            {
                more = await reader.WaitToReadAsync(CancellationToken.None).AsTask().WaitAsync(_databaseDown ? TimeSpan.FromSeconds(1) : Timeout.InfiniteTimeSpan, CancellationToken.None);
            }
            catch (TimeoutException)
            {
                // Nothing new while Postgres is down: see whether it is back.
                await ReplayAsync();
                continue;
            }
            if (!more)
            {
                break;
            }
            // Gather for at most one flush interval, so an event waits no longer than that.
            var deadline = Stopwatch.GetTimestamp() + (long)(_flushInterval.TotalSeconds * Stopwatch.Frequency);
            while (batch.Count < MaxBatch)
            {
                while (batch.Count < MaxBatch && reader.TryRead(out var item))
                {
                    batch.Add(item);
                }
                var remaining = TimeSpan.FromSeconds((deadline - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
                if (batch.Count >= MaxBatch || remaining <= TimeSpan.Zero || stoppingToken.IsCancellationRequested)
                {
                    break;
                }
                try
                {
                    if (!await reader.WaitToReadAsync(CancellationToken.None).AsTask().WaitAsync(remaining, CancellationToken.None))
                    {
                        break;
                    }
                }
                catch (TimeoutException)
                {
                    break;
                }
            }
            await StoreAsync(batch);
            batch.Clear();
            if (!_databaseDown && reader.Count == 0 && Volatile.Read(ref _spooledWhileUp))
            {
                Volatile.Write(ref _spooledWhileUp, false);
                await ReplayAsync();
            }
        }
        await ReplayAsync();
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _channel.Writer.TryComplete();
        if (ExecuteTask is { } running)
        {
            await running.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
        }
        await base.StopAsync(cancellationToken);
    }

    private async Task StoreAsync(List<UsageEvent> batch)
    {
        if (_databaseDown)
        {
            await ReplayAsync();
        }
        if (!_databaseDown)
        {
            try
            {
                await InsertAsync(batch);
                return;
            }
            catch (Exception e) when (IsDatabaseFailure(e))
            {
                _databaseDown = true;
                LogDatabaseDown(_logger, e.GetType().Name);
            }
        }
        _spool.Append(batch);
        _metrics.Spooled(batch.Count);
    }

    /// <summary>Replays every spool file whose owner is not writing it; marks Postgres up when that works.</summary>
    private async Task ReplayAsync()
    {
        try
        {
            var replayed = await _spool.ReplayAsync(InsertAsync);
            if (_databaseDown)
            {
                // Probe: a cheap round trip proves Postgres is back even when there was nothing to replay.
                await using var connection = await _dataSource.OpenConnectionAsync();
                _databaseDown = false;
                LogDatabaseBack(_logger, replayed);
            }
        }
        catch (Exception e) when (IsDatabaseFailure(e))
        {
            _databaseDown = true;
        }
    }

    private static bool IsDatabaseFailure(Exception e) => e is NpgsqlException or TimeoutException or IOException or InvalidOperationException or System.Net.Sockets.SocketException;

    private async Task InsertAsync(IReadOnlyList<UsageEvent> batch)
    {
        if (batch.Count == 0)
        {
            return;
        }
        await using var connection = await _dataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var create = new NpgsqlCommand(UsageSql.CreateStaging, connection, transaction))
        {
            await create.ExecuteNonQueryAsync();
        }
        await using (var importer = await connection.BeginBinaryImportAsync(UsageSql.CopyStaging))
        {
            foreach (var e in batch)
            {
                importer.StartRow();
                importer.Write(e.Id, NpgsqlDbType.Uuid);
                importer.Write(e.Time, NpgsqlDbType.TimestampTz);
                importer.Write(e.DeviceId, NpgsqlDbType.Text);
                importer.Write(e.UserId, NpgsqlDbType.Text);
                importer.Write(e.OrgId, NpgsqlDbType.Text);
                WriteNullable(importer, e.SessionId);
                WriteNullable(importer, e.AgentId);
                importer.Write(e.Model, NpgsqlDbType.Text);
                importer.Write(e.Endpoint, NpgsqlDbType.Text);
                importer.Write(e.Status, NpgsqlDbType.Integer);
                importer.Write(e.Streamed, NpgsqlDbType.Boolean);
                importer.Write(e.InputTokens, NpgsqlDbType.Bigint);
                importer.Write(e.OutputTokens, NpgsqlDbType.Bigint);
                importer.Write(e.CacheWrite5mTokens, NpgsqlDbType.Bigint);
                importer.Write(e.CacheWrite1hTokens, NpgsqlDbType.Bigint);
                importer.Write(e.CacheReadTokens, NpgsqlDbType.Bigint);
                importer.Write(e.WebSearchRequests, NpgsqlDbType.Bigint);
                importer.Write(e.WebFetchRequests, NpgsqlDbType.Bigint);
                if (e.CostUsd is decimal cost)
                {
                    importer.Write(cost, NpgsqlDbType.Numeric);
                }
                else
                {
                    importer.WriteNull();
                }
                importer.Write(e.LatencyMs, NpgsqlDbType.Double);
                if (e.TimeToFirstByteMs is double ttfb)
                {
                    importer.Write(ttfb, NpgsqlDbType.Double);
                }
                else
                {
                    importer.WriteNull();
                }
                WriteNullable(importer, e.UpstreamRequestId);
                importer.Write(e.CorrelationId, NpgsqlDbType.Text);
                importer.Write(e.Cancelled, NpgsqlDbType.Boolean);
                importer.Write(e.StreamError, NpgsqlDbType.Boolean);
                importer.Write(e.CostEstimated, NpgsqlDbType.Boolean);
                importer.Write(e.OutputEstimated, NpgsqlDbType.Boolean);
            }
            await importer.CompleteAsync();
        }
        await using (var merge = new NpgsqlCommand(UsageSql.MergeStaging, connection, transaction))
        {
            await merge.ExecuteNonQueryAsync();
        }
        await transaction.CommitAsync();
        NotifyStored(batch.Count);
    }

    // Synchronous writes: they fill Npgsql's buffer and only touch the socket when it is full, which on this
    // background loop costs far less than an async state machine per column.
    private static void WriteNullable(NpgsqlBinaryImporter importer, string? value)
    {
        if (value is null)
        {
            importer.WriteNull();
        }
        else
        {
            importer.Write(value, NpgsqlDbType.Text);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Postgres is unavailable ({Reason}): usage events go to the spool file until it is back")]
    private static partial void LogDatabaseDown(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Postgres is back: {Replayed} spooled usage events stored")]
    private static partial void LogDatabaseBack(ILogger logger, int replayed);
}

internal static class UsageSql
{
    private const string Columns = "id, time, device_id, user_id, org_id, session_id, agent_id, model, endpoint, status, streamed, input_tokens, " +
        "output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, web_search_requests, web_fetch_requests, cost_usd, " +
        "latency_ms, ttfb_ms, upstream_request_id, correlation_id, cancelled, stream_error, cost_estimated, output_estimated";

    public const string CreateStaging =
        "CREATE TEMP TABLE IF NOT EXISTS usage_staging (LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS";

    public const string CopyStaging = "COPY usage_staging (" + Columns + ") FROM STDIN (FORMAT BINARY)";

    private const string RollupColumns = "granularity, bucket_start, device_id, model, requests, errors, input_tokens, output_tokens, " +
        "cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd, unpriced_requests";

    private const string RollupUpdate = "ON CONFLICT (granularity, bucket_start, device_id, model) DO UPDATE SET " +
        "requests = r.requests + EXCLUDED.requests, errors = r.errors + EXCLUDED.errors, input_tokens = r.input_tokens + EXCLUDED.input_tokens, " +
        "output_tokens = r.output_tokens + EXCLUDED.output_tokens, cache_write_5m_tokens = r.cache_write_5m_tokens + EXCLUDED.cache_write_5m_tokens, " +
        "cache_write_1h_tokens = r.cache_write_1h_tokens + EXCLUDED.cache_write_1h_tokens, cache_read_tokens = r.cache_read_tokens + EXCLUDED.cache_read_tokens, " +
        "cost_usd = r.cost_usd + EXCLUDED.cost_usd, unpriced_requests = r.unpriced_requests + EXCLUDED.unpriced_requests";

    private static string Rollup(string granularity, string unit) =>
        $"INSERT INTO usage_rollups AS r ({RollupColumns}) " +
        $"SELECT '{granularity}', date_trunc('{unit}', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, device_id, model, count(*), " +
        "count(*) FILTER (WHERE status >= 400), sum(input_tokens), sum(output_tokens), sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), " +
        "sum(cache_read_tokens), coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL AND model <> '') " +
        "FROM inserted GROUP BY bucket, device_id, model ORDER BY bucket, device_id, model " + RollupUpdate;

    // Only rows new to usage_events reach the rollups, so a replayed batch is never counted twice.
    public static readonly string MergeStaging =
        $"WITH inserted AS (INSERT INTO usage_events ({Columns}) SELECT {Columns} FROM usage_staging ON CONFLICT (id) DO NOTHING RETURNING *), " +
        $"hourly AS ({Rollup("h", "hour")} RETURNING 1) " +
        Rollup("d", "day");
}

/// <summary>
/// The append-only spool: one JSON line per event, flushed to disk before a batch counts as kept. Each process
/// appends to its own file under an exclusive lock; replay takes any file it can lock, stores its events
/// (idempotently) and deletes it.
/// </summary>
public sealed class UsageSpool
{
    private readonly string _directory;
    private readonly string _own;
    private readonly SemaphoreSlim _ownLock = new(1, 1);

    public UsageSpool(IConfiguration configuration)
    {
        _directory = configuration["USAGE_SPOOL_DIR"] is { Length: > 0 } dir ? dir : Path.Combine(Path.GetTempPath(), "claudeproxy-spool");
        Directory.CreateDirectory(_directory);
        _own = Path.Combine(_directory, $"usage-{Guid.NewGuid():N}.jsonl");
    }

    public void Append(IReadOnlyList<UsageEvent> events)
    {
        _ownLock.Wait();
        try
        {
            using var file = new FileStream(_own, FileMode.Append, FileAccess.Write, FileShare.None);
            foreach (var e in events)
            {
                JsonSerializer.Serialize(file, e, UsageSpoolJsonContext.Default.UsageEvent);
                file.WriteByte((byte)'\n');
            }
            file.Flush(flushToDisk: true);
        }
        finally
        {
            _ownLock.Release();
        }
    }

    /// <summary>Stores every spooled event through <paramref name="insert"/>; returns how many. Stops at the first failure.</summary>
    public async Task<int> ReplayAsync(Func<IReadOnlyList<UsageEvent>, Task> insert)
    {
        var total = 0;
        foreach (var path in Directory.EnumerateFiles(_directory, "usage-*.jsonl").ToList())
        {
            var own = path == _own;
            if (own)
            {
                await _ownLock.WaitAsync();
            }
            try
            {
                total += await ReplayFileAsync(path, insert);
            }
            finally
            {
                if (own)
                {
                    _ownLock.Release();
                }
            }
        }
        return total;
    }

    private static async Task<int> ReplayFileAsync(string path, Func<IReadOnlyList<UsageEvent>, Task> insert)
    {
        var total = 0;
        {
            FileStream file;
            try
            {
                file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return 0; // Its owner is writing it, or another instance is replaying it.
            }
            await using (file)
            {
                var batch = new List<UsageEvent>(1000);
                using var reader = new StreamReader(file);
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (line.Length == 0)
                    {
                        continue;
                    }
                    UsageEvent? item;
                    try
                    {
                        item = JsonSerializer.Deserialize(line, UsageSpoolJsonContext.Default.UsageEvent);
                    }
                    catch (JsonException)
                    {
                        continue; // A line cut short by a crash mid-write: its batch was never acknowledged.
                    }
                    if (item is not null)
                    {
                        batch.Add(item);
                    }
                    if (batch.Count == 1000)
                    {
                        await insert(batch);
                        total += batch.Count;
                        batch.Clear();
                    }
                }
                await insert(batch);
                total += batch.Count;
                File.Delete(path);
            }
        }
        return total;
    }

    public bool IsEmpty => !Directory.EnumerateFiles(_directory, "usage-*.jsonl").Any();
}

[System.Text.Json.Serialization.JsonSerializable(typeof(UsageEvent))]
internal sealed partial class UsageSpoolJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
