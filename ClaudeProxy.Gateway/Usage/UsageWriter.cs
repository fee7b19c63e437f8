using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using ClaudeProxy.Gateway.Telemetry;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// Usage events go onto a bounded channel (the request path never waits); this writer takes them in batches and
/// inserts each batch with binary COPY into a staging table, then moves it into <c>usage_events</c> idempotently
/// (by event id) and updates the hourly and daily rollups, in one transaction.
/// <list type="bullet">
/// <item>Postgres unreachable (connection, I/O, timeouts, server shutting down): the batch goes to the
/// <see cref="UsageSpool"/> and is replayed when Postgres answers again, each event stored exactly once.</item>
/// <item>Postgres refuses a row (data errors, SQLSTATE classes 22, 23 and 54): the batch is split in halves until the
/// refused events are alone; the others are stored, each refused one becomes a <c>usage_dead_letters</c> row (or a line
/// in the spool folder's dead-letter file when Postgres cannot take that either), and the writer goes on.</item>
/// <item>Anything else: the events stay in memory, the failure is reported once in <c>/readyz</c> and the log, and the
/// writer backs off and tries again. It never stops the process.</item>
/// </list>
/// The writer stops after the web server (<see cref="IHostedLifecycleService.StoppedAsync"/>), so events of requests
/// that finish during shutdown are drained too; what Postgres cannot take by the shutdown deadline goes to the spool.
/// </summary>
public sealed partial class UsageWriter : BackgroundService, IUsageSink, IHostedLifecycleService
{
    public const string WriterService = "usage-writer";
    public const string SpoolService = "usage-spool";
    public const string ReplayService = "usage-spool-replay";
    private const int MaxBatch = 2000;
    private const int MaxHeld = 100_000;
    private readonly Channel<UsageEvent> _channel = Channel.CreateBounded<UsageEvent>(new BoundedChannelOptions(100_000)
    {
        // Not single-reader: at a shutdown deadline, StoppedAsync takes what is left while the writer may still be stuck in Postgres.
        SingleReader = false,
        FullMode = BoundedChannelFullMode.Wait,
    });
    private readonly NpgsqlDataSource _dataSource;
    private readonly UsageSpool _spool;
    private readonly GatewayMetrics _metrics;
    private readonly BackgroundHealth _health;
    private readonly TimeProvider _time;
    private readonly Events.GatewayEvents? _events;
    private readonly ILogger<UsageWriter> _logger;
    private readonly TimeSpan _flushInterval;
    // Cancelled when shutdown runs out of time: Postgres calls stop, and what is left goes to the spool.
    private readonly CancellationTokenSource _abandon = new();
    private readonly ConcurrentQueue<UsageEvent> _overflow = new();
    private readonly List<UsageEvent> _held = [];
    private readonly Backoff _backoff = new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10));
    private readonly Progress _stored = new();
    private readonly Progress _deadLetters = new();
    private int _overflowCount;
    private UsageEvent[] _inFlight = [];
    private int _handedOver;
    private int _dropWarned;
    private bool _spoolWaiting = true;
    private volatile bool _databaseDown;
    private DateTimeOffset _downSince;
    private string? _downReason;
    private DateTimeOffset _nextAttempt;
    private DateTimeOffset _holdUntil;

    public UsageWriter(NpgsqlDataSource dataSource, UsageSpool spool, GatewayMetrics metrics, BackgroundHealth health, TimeProvider time,
        ILogger<UsageWriter> logger, IConfiguration configuration, Events.GatewayEvents? events = null)
    {
        _events = events;
        _dataSource = dataSource;
        _spool = spool;
        _metrics = metrics;
        _health = health;
        _time = time;
        _logger = logger;
        var ms = Configuration.GatewaySettings.Settings(configuration).Number(Settings.SettingsCatalogue.UsageFlushMs);
        _flushInterval = TimeSpan.FromMilliseconds(ms);
    }

    /// <summary>Events written to Postgres since start (an event replayed after an uncertain failure may count twice).</summary>
    public long Stored => _stored.Value;

    /// <summary>Events Postgres refused since start, kept as dead letters.</summary>
    public long DeadLetters => _deadLetters.Value;

    /// <summary>Completes once at least <paramref name="count"/> events have been written since start.</summary>
    public Task WaitForStoredAsync(long count) => _stored.WaitFor(count);

    /// <summary>Completes once at least <paramref name="count"/> events have been dead-lettered since start.</summary>
    public Task WaitForDeadLettersAsync(long count) => _deadLetters.WaitFor(count);

    public void Enqueue(UsageEvent usage)
    {
        if (_channel.Writer.TryWrite(usage))
        {
            return;
        }
        // The channel is full (Postgres far behind) or closed (shutting down): the disk keeps it, and the
        // writer replays it once it has caught up.
        try
        {
            _spool.Append([usage]);
            _metrics.Spooled(1);
            Volatile.Write(ref _spoolWaiting, true);
        }
        catch (Exception e)
        {
            if (Interlocked.Increment(ref _overflowCount) <= MaxHeld)
            {
                _overflow.Enqueue(usage);
            }
            else
            {
                Interlocked.Decrement(ref _overflowCount);
                Dropped(1);
            }
            if (_health.Failed(SpoolService, e))
            {
                LogSpoolFailed(_logger, BackgroundHealth.Describe(e));
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        var reader = _channel.Reader;
        var batch = new List<UsageEvent>(MaxBatch);
        await ReplayAsync();
        while (true)
        {
            try
            {
                TakeHeld(batch);
                if (batch.Count == 0)
                {
                    bool more;
                    try
                    {
                        // Work left aside (Postgres down, the spool waiting, events held) is retried at least every second.
                        var idle = _databaseDown || _held.Count > 0 || !_overflow.IsEmpty || Volatile.Read(ref _spoolWaiting)
                            ? TimeSpan.FromSeconds(1) : Timeout.InfiniteTimeSpan;
                        more = await reader.WaitToReadAsync(CancellationToken.None).AsTask().WaitAsync(idle, _time, CancellationToken.None);
                    }
                    catch (TimeoutException)
                    {
                        await ReplayAsync();
                        continue;
                    }
                    if (!more && ((_held.Count == 0 && _overflow.IsEmpty) || _abandon.IsCancellationRequested))
                    {
                        break;
                    }
                }
                await GatherAsync(reader, batch);
                var inFlight = batch.ToArray();
                batch.Clear();
                Volatile.Write(ref _inFlight, inFlight);
                await KeepAsync(inFlight);
                Volatile.Write(ref _inFlight, []);
                if (Volatile.Read(ref _handedOver) == 1)
                {
                    return; // Shutdown spooled what was left while this batch was stuck.
                }
                if (!_databaseDown && reader.Count == 0 && Volatile.Read(ref _spoolWaiting))
                {
                    await ReplayAsync();
                }
            }
            catch (Exception e)
            {
                // Not a Postgres outage (those are handled where they happen): keep the events, report, back off.
                Hold(batch);
                Hold(Volatile.Read(ref _inFlight));
                Volatile.Write(ref _inFlight, []);
                batch.Clear();
                if (_health.Failed(WriterService, e))
                {
                    LogFailed(_logger, "The usage writer", "its events are kept in memory and it tries again", e);
                }
                await Task.Delay(_backoff.Next(), _time, _abandon.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
        if (!_databaseDown && !_abandon.IsCancellationRequested)
        {
            await ReplayAsync();
        }
        if (_held.Count + _overflowCount is > 0 and var lost)
        {
            Dropped(lost);
        }
    }

    /// <summary>Gathers for at most one flush interval, so an event waits no longer than that.</summary>
    private async Task GatherAsync(ChannelReader<UsageEvent> reader, List<UsageEvent> batch)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(_flushInterval.TotalSeconds * Stopwatch.Frequency);
        while (batch.Count < MaxBatch)
        {
            while (batch.Count < MaxBatch && reader.TryRead(out var item))
            {
                batch.Add(item);
            }
            var remaining = TimeSpan.FromSeconds((deadline - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
            if (batch.Count >= MaxBatch || remaining <= TimeSpan.Zero || reader.Completion.IsCompleted)
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
    }

    private void TakeHeld(List<UsageEvent> batch)
    {
        if (_time.GetUtcNow() < _holdUntil && !_abandon.IsCancellationRequested)
        {
            return;
        }
        while (batch.Count < MaxBatch && _overflow.TryDequeue(out var item))
        {
            Interlocked.Decrement(ref _overflowCount);
            batch.Add(item);
        }
        var take = Math.Min(MaxBatch - batch.Count, _held.Count);
        if (take > 0)
        {
            batch.AddRange(_held.GetRange(0, take));
            _held.RemoveRange(0, take);
        }
    }

    /// <summary>Stores the batch, or spools what Postgres cannot take now, or holds it in memory when the disk fails too.</summary>
    private async Task KeepAsync(UsageEvent[] batch)
    {
        if (batch.Length == 0)
        {
            return;
        }
        if (_databaseDown)
        {
            await ReplayAsync();
        }
        IReadOnlyList<UsageEvent> rest = batch;
        if (!_databaseDown)
        {
            try
            {
                await StoreAsync(batch, "writer");
                rest = [];
                if (_health.Succeeded(WriterService))
                {
                    LogBack(_logger, "The usage writer is storing");
                }
            }
            catch (DatabaseUnavailableException e)
            {
                MarkDown(e.InnerException!);
                rest = e.Remaining ?? batch;
            }
        }
        if (rest.Count == 0)
        {
            return;
        }
        try
        {
            _spool.Append(rest);
            _metrics.Spooled(rest.Count);
            Volatile.Write(ref _spoolWaiting, true);
            if (_health.Succeeded(SpoolService))
            {
                LogSpoolBack(_logger);
            }
        }
        catch (Exception e)
        {
            Hold(rest);
            _holdUntil = _time.GetUtcNow() + _backoff.Next();
            if (_health.Failed(SpoolService, e))
            {
                LogSpoolFailed(_logger, BackgroundHealth.Describe(e));
            }
        }
    }

    private void Hold(IReadOnlyList<UsageEvent> events)
    {
        var room = Math.Max(0, MaxHeld - _held.Count);
        _held.AddRange(events.Take(room));
        if (events.Count > room)
        {
            Dropped(events.Count - room);
        }
    }

    private void Dropped(int count)
    {
        _metrics.UsageDropped(count);
        if (Interlocked.Exchange(ref _dropWarned, 1) == 0)
        {
            LogDropped(_logger, count);
        }
    }

    /// <summary>
    /// Stores the events; on a refusal, halves the batch until each refused event is alone and dead-letters it. Throws
    /// <see cref="DatabaseUnavailableException"/> (with the events not yet handled) when Postgres cannot be reached.
    /// </summary>
    private async Task StoreAsync(IReadOnlyList<UsageEvent> batch, string source)
    {
        try
        {
            await InsertAsync(batch);
            return;
        }
        catch (Exception e) when (!IsRefusal(e))
        {
            throw new DatabaseUnavailableException(e, null);
        }
        catch (Exception e)
        {
            LogRefused(_logger, batch.Count, Reason(e));
        }
        var handled = new HashSet<Guid>();
        try
        {
            var half = batch.Count / 2;
            await StorePartAsync(Slice(batch, 0, half), source, handled);
            await StorePartAsync(Slice(batch, half, batch.Count - half), source, handled);
        }
        catch (DatabaseUnavailableException e)
        {
            throw new DatabaseUnavailableException(e.InnerException!, [.. batch.Where(u => !handled.Contains(u.Id))]);
        }
    }

    private async Task StorePartAsync(IReadOnlyList<UsageEvent> part, string source, HashSet<Guid> handled)
    {
        if (part.Count == 0)
        {
            return;
        }
        try
        {
            await InsertAsync(part);
        }
        catch (Exception e) when (IsRefusal(e))
        {
            if (part.Count == 1)
            {
                await DeadLetterAsync(part[0], source, Reason(e));
                handled.Add(part[0].Id);
                return;
            }
            var half = part.Count / 2;
            await StorePartAsync(Slice(part, 0, half), source, handled);
            await StorePartAsync(Slice(part, half, part.Count - half), source, handled);
            return;
        }
        catch (Exception e)
        {
            throw new DatabaseUnavailableException(e, null);
        }
        foreach (var u in part)
        {
            handled.Add(u.Id);
        }
    }

    private static ArraySegment<UsageEvent> Slice(IReadOnlyList<UsageEvent> list, int start, int count) =>
        list is UsageEvent[] array ? new ArraySegment<UsageEvent>(array, start, count) : new ArraySegment<UsageEvent>([.. list.Skip(start).Take(count)]);

    /// <summary>
    /// Postgres refused the data itself (data exceptions, integrity constraints, program limits such as a row too large),
    /// or the client could not encode a value: the same row fails again however often it is retried.
    /// </summary>
    public static bool IsRefusal(Exception e) => e switch
    {
        PostgresException pg => pg.SqlState.Length == 5 && pg.SqlState[..2] is "22" or "23" or "54",
        System.Text.EncoderFallbackException or ArgumentException or InvalidCastException or OverflowException or FormatException => true,
        _ => false,
    };

    private static string Reason(Exception e) => (e is PostgresException pg ? $"{pg.SqlState}: {pg.MessageText}" : BackgroundHealth.Describe(e)).Replace('\0', ' ');

    private async Task DeadLetterAsync(UsageEvent usage, string source, string reason)
    {
        var letter = new DeadLetterLine(_time.GetUtcNow(), usage.Id, source, reason, JsonSerializer.Serialize(usage, UsageSpoolJsonContext.Default.UsageEvent));
        await KeepDeadLetterAsync(letter);
        LogDeadLetter(_logger, usage.Id, source, reason);
    }

    private async Task KeepDeadLetterAsync(DeadLetterLine letter)
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(_abandon.Token);
            await using var insert = new NpgsqlCommand(
                "INSERT INTO usage_dead_letters (time, event_id, source, reason, payload) VALUES (@time, @id, @source, @reason, @payload)", connection);
            insert.Parameters.AddWithValue("time", letter.Time);
            insert.Parameters.AddWithValue("id", letter.EventId is Guid id ? id : DBNull.Value);
            insert.Parameters.AddWithValue("source", letter.Source);
            insert.Parameters.AddWithValue("reason", letter.Reason);
            insert.Parameters.AddWithValue("payload", letter.Payload);
            await insert.ExecuteNonQueryAsync(_abandon.Token);
        }
        catch (Exception)
        {
            // Postgres cannot take the dead letter either: the spool folder keeps it. Should the disk fail too, the event
            // counts as not handled and is spooled or held with the rest of its batch.
            try
            {
                _spool.AppendDeadLetter(letter);
            }
            catch (Exception disk)
            {
                throw new DatabaseUnavailableException(disk, null);
            }
        }
        _deadLetters.Add(1);
        _metrics.DeadLettered(letter.Source);
        _events?.Raise(Contracts.EventTypes.UsageDeadLettered, new System.Text.Json.Nodes.JsonObject
        {
            ["usage_event_id"] = letter.EventId?.ToString(), ["source"] = letter.Source, ["reason"] = letter.Reason.Length <= 500 ? letter.Reason : letter.Reason[..500],
            ["instance"] = _events.Instance,
        }, time: letter.Time);
    }

    /// <summary>Probes Postgres when it was down, then replays every spool file this writer may take; marks Postgres up when that works.</summary>
    private async Task ReplayAsync()
    {
        if (_abandon.IsCancellationRequested || (_databaseDown && _time.GetUtcNow() < _nextAttempt))
        {
            return;
        }
        try
        {
            if (_databaseDown)
            {
                // A cheap round trip proves Postgres is back even when there is nothing to replay.
                await using var connection = await _dataSource.OpenConnectionAsync(_abandon.Token);
            }
            Volatile.Write(ref _spoolWaiting, false);
            var replayed = await _spool.ReplayAsync(ReplayStoreAsync, ReplayRefuseAsync, _abandon.Token);
            if (_databaseDown)
            {
                _databaseDown = false;
                _backoff.Reset();
                LogDatabaseBack(_logger, replayed);
                _events?.Outage("postgres", lost: false);
                _health.Succeeded(WriterService);
            }
            if (_health.Succeeded(ReplayService))
            {
                LogBack(_logger, "Replaying the usage spool works");
            }
        }
        catch (DatabaseUnavailableException e)
        {
            Volatile.Write(ref _spoolWaiting, true);
            MarkDown(e.InnerException!);
        }
        catch (Exception e) when (!IsRefusal(e) && e is NpgsqlException or TimeoutException or System.Net.Sockets.SocketException or OperationCanceledException)
        {
            Volatile.Write(ref _spoolWaiting, true);
            MarkDown(e);
        }
        catch (Exception e)
        {
            Volatile.Write(ref _spoolWaiting, true);
            if (_health.Failed(ReplayService, e))
            {
                LogFailed(_logger, "Replaying the usage spool", "it is tried again", e);
            }
        }
    }

    private Task ReplayStoreAsync(IReadOnlyList<UsageEvent> batch, CancellationToken cancellationToken) => StoreAsync(batch, "replay");

    private Task ReplayRefuseAsync(string line, string reason, CancellationToken cancellationToken) =>
        KeepDeadLetterAsync(new DeadLetterLine(_time.GetUtcNow(), null, "replay", reason, JsonSerializer.Serialize(line, UsageSpoolJsonContext.Default.String)));

    private void MarkDown(Exception e)
    {
        _nextAttempt = _time.GetUtcNow() + _backoff.Next();
        _downReason = BackgroundHealth.Describe(e);
        _health.Failed(WriterService, _downReason);
        if (!_databaseDown)
        {
            _databaseDown = true;
            _downSince = _time.GetUtcNow();
            LogDatabaseDown(_logger, _downReason);
            _events?.Outage("postgres", lost: true, _downReason);
        }
    }

    /// <summary>The <c>/readyz</c> entry: degraded while Postgres is unreachable, events are held in memory, or spool files are quarantined.</summary>
    public HealthCheckResult Check()
    {
        var waiting = _spool.PendingFiles;
        var quarantined = _spool.QuarantinedFiles;
        var held = _held.Count + Volatile.Read(ref _overflowCount);
        var tail = $"{DeadLetters} dead letters since start; spool: {waiting} files waiting, {quarantined} quarantined";
        if (_databaseDown)
        {
            return HealthCheckResult.Degraded($"Postgres unreachable since {_downSince:O} ({_downReason}): usage goes to the spool; {tail}");
        }
        if (held > 0)
        {
            return HealthCheckResult.Degraded($"{held} usage events held in memory: neither Postgres nor the spool could take them yet; {tail}");
        }
        if (quarantined > 0)
        {
            return HealthCheckResult.Degraded($"storing to Postgres; {tail}: an operator should look at the quarantined files and their .reason");
        }
        return HealthCheckResult.Healthy($"storing to Postgres; {tail}");
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Nothing yet: requests still finishing add usage. The writer drains in <see cref="StoppedAsync"/>.</summary>
    public override Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppedAsync(CancellationToken cancellationToken)
    {
        _channel.Writer.TryComplete();
        if (ExecuteTask is { } running)
        {
            await using (cancellationToken.Register(_abandon.Cancel))
            {
                await running.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
            // Abandoned: Postgres calls are cancelled and what is left goes to the spool. A Postgres that does not even
            // answer the cancellation gets two seconds; then the batch in flight and the rest are spooled from here (a
            // batch that commits after all is stored once: replay is idempotent).
            await running.WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None).ContinueWith(_ => { }, TaskScheduler.Default);
            if (!running.IsCompleted && Interlocked.Exchange(ref _handedOver, 1) == 0)
            {
                SpoolLeftovers();
            }
        }
        // Cancels the stopping token without waiting again for a writer that Postgres still holds.
        await base.StopAsync(new CancellationToken(canceled: true));
    }

    private void SpoolLeftovers()
    {
        var left = new List<UsageEvent>(Volatile.Read(ref _inFlight));
        while (_channel.Reader.TryRead(out var item))
        {
            left.Add(item);
        }
        while (_overflow.TryDequeue(out var item))
        {
            left.Add(item);
        }
        try
        {
            _spool.Append(left);
            _metrics.Spooled(left.Count);
        }
        catch (Exception e)
        {
            Dropped(left.Count);
            LogSpoolFailed(_logger, BackgroundHealth.Describe(e));
        }
    }

    public override void Dispose()
    {
        _abandon.Dispose();
        base.Dispose();
    }

    private async Task InsertAsync(IReadOnlyList<UsageEvent> batch)
    {
        if (batch.Count == 0)
        {
            return;
        }
        var cancellationToken = _abandon.Token;
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var create = new NpgsqlCommand(UsageSql.CreateStaging, connection, transaction))
        {
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var importer = await connection.BeginBinaryImportAsync(UsageSql.CopyStaging, cancellationToken))
        {
            foreach (var e in batch)
            {
                UsageColumns.WriteRow(importer, e);
            }
            await importer.CompleteAsync(cancellationToken);
        }
        await using (var merge = new NpgsqlCommand(UsageSql.MergeStaging, connection, transaction))
        {
            await merge.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        _stored.Add(batch.Count);
    }

    /// <summary>Postgres could not be reached; <see cref="Remaining"/> lists the events not yet stored or dead-lettered, when known.</summary>
    private sealed class DatabaseUnavailableException(Exception inner, IReadOnlyList<UsageEvent>? remaining) : Exception(inner.Message, inner)
    {
        public IReadOnlyList<UsageEvent>? Remaining { get; } = remaining;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Postgres is unavailable ({Reason}): usage events go to the spool file until it is back")]
    private static partial void LogDatabaseDown(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Postgres is back: {Replayed} spooled usage events stored")]
    private static partial void LogDatabaseBack(ILogger logger, int replayed);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Postgres refused a batch of {Count} usage events ({Reason}): storing the others and dead-lettering the refused ones")]
    private static partial void LogRefused(ILogger logger, int count, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Usage event {EventId} refused by Postgres and kept as a dead letter (source {Source}): {Reason}")]
    private static partial void LogDeadLetter(ILogger logger, Guid eventId, string source, string reason);

    /// <summary>The writer's and the replay's failures and recoveries, each logged once per episode.</summary>
    [LoggerMessage(Level = LogLevel.Error, Message = "{What} failed; {Consequence}")]
    private static partial void LogFailed(ILogger logger, string what, string consequence, Exception error);

    [LoggerMessage(Level = LogLevel.Information, Message = "{What} again")]
    private static partial void LogBack(ILogger logger, string what);

    [LoggerMessage(Level = LogLevel.Error, Message = "The usage spool cannot be written ({Reason}): events are held in memory until it can")]
    private static partial void LogSpoolFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "The usage spool is writable again")]
    private static partial void LogSpoolBack(ILogger logger);


    [LoggerMessage(Level = LogLevel.Critical, Message = "{Count} usage events were dropped: Postgres, the spool and the in-memory reserve were all unavailable or full")]
    private static partial void LogDropped(ILogger logger, int count);
}

internal static class UsageSql
{
    public const string CreateStaging =
        "CREATE TEMP TABLE IF NOT EXISTS usage_staging (LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS";

    public static readonly string CopyStaging = $"COPY usage_staging ({UsageColumns.List}) FROM STDIN (FORMAT BINARY)";

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
        "sum(cache_read_tokens), coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE (cost_usd IS NULL OR cost_estimated) AND model <> '') " +
        "FROM inserted GROUP BY bucket, device_id, model ORDER BY bucket, device_id, model " + RollupUpdate;

    private const string Day = "date_trunc('day', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";

    private const string Sums = "sum(input_tokens), sum(output_tokens), sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), sum(cache_read_tokens), " +
        "coalesce(sum(cost_usd), 0)";

    private const string SumColumns = "input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd";

    private const string AddSums = "requests = r.requests + EXCLUDED.requests, input_tokens = r.input_tokens + EXCLUDED.input_tokens, " +
        "output_tokens = r.output_tokens + EXCLUDED.output_tokens, cache_write_5m_tokens = r.cache_write_5m_tokens + EXCLUDED.cache_write_5m_tokens, " +
        "cache_write_1h_tokens = r.cache_write_1h_tokens + EXCLUDED.cache_write_1h_tokens, cache_read_tokens = r.cache_read_tokens + EXCLUDED.cache_read_tokens, " +
        "cost_usd = r.cost_usd + EXCLUDED.cost_usd";

    private static string UserRollup(string granularity, string unit) =>
        $"INSERT INTO user_rollups AS r (granularity, bucket_start, user_id, model, requests, errors, {SumColumns}) " +
        $"SELECT '{granularity}', date_trunc('{unit}', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, user_id, model, count(*), " +
        $"count(*) FILTER (WHERE status >= 400), {Sums} " +
        "FROM inserted GROUP BY bucket, user_id, model ORDER BY bucket, user_id, model " +
        $"ON CONFLICT (granularity, bucket_start, user_id, model) DO UPDATE SET {AddSums}, errors = r.errors + EXCLUDED.errors";

    // A request counts once in each distinct group it was admitted under.
    private const string GroupRollup =
        $"INSERT INTO group_rollups AS r (bucket_start, group_id, model, requests, errors, {SumColumns}) " +
        $"SELECT {Day} AS bucket, g.group_id, model, count(*), count(*) FILTER (WHERE status >= 400), {Sums} " +
        "FROM inserted CROSS JOIN LATERAL (SELECT DISTINCT x AS group_id FROM unnest(string_to_array(group_ids, ' ')) AS x WHERE x <> '') AS g " +
        "GROUP BY bucket, g.group_id, model ORDER BY bucket, g.group_id, model " +
        $"ON CONFLICT (bucket_start, group_id, model) DO UPDATE SET {AddSums}, errors = r.errors + EXCLUDED.errors";

    private const string ModelRollup =
        $"INSERT INTO model_rollups AS r (bucket_start, model, status, stream_error, requests, {SumColumns}) " +
        $"SELECT date_trunc('hour', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, model, status, stream_error, count(*), {Sums} " +
        "FROM inserted GROUP BY bucket, model, status, stream_error ORDER BY bucket, model, status, stream_error " +
        $"ON CONFLICT (bucket_start, model, status, stream_error) DO UPDATE SET {AddSums}";

    // A session starts when its first request was sent (the event's time is when the answer ended).
    private const string SessionRollup =
        $"INSERT INTO session_rollups AS r (session_id, agent_id, model, device_id, user_email, parent_agent_id, first_seen, last_seen, requests, errors, {SumColumns}) " +
        "SELECT session_id, coalesce(agent_id, '') AS agent, model, min(device_id), max(user_email), max(parent_agent_id), " +
        "min(time - latency_ms * interval '1 millisecond'), max(time), count(*), count(*) FILTER (WHERE status >= 400), " + Sums + " " +
        "FROM inserted WHERE session_id IS NOT NULL GROUP BY session_id, agent, model ORDER BY session_id, agent, model " +
        $"ON CONFLICT (session_id, agent_id, model) DO UPDATE SET {AddSums}, errors = r.errors + EXCLUDED.errors, " +
        "user_email = coalesce(r.user_email, EXCLUDED.user_email), parent_agent_id = coalesce(r.parent_agent_id, EXCLUDED.parent_agent_id), " +
        "first_seen = least(r.first_seen, EXCLUDED.first_seen), last_seen = greatest(r.last_seen, EXCLUDED.last_seen)";

    /// <summary>Histogram buckets per doubling of the time to first byte: bucket i starts at 2^(i/8) ms.</summary>
    public const int TtftBucketsPerDoubling = 8;

    // Below 1e9 ms: also keeps out NaN and infinity, which Postgres sorts above every number.
    private static readonly string TtftRollup =
        "INSERT INTO ttft_rollups AS r (bucket_start, model, bucket, requests) " +
        $"SELECT {Day} AS day, model, floor(ln(greatest(ttfb_ms, 1)) / ln(2) * {TtftBucketsPerDoubling})::smallint AS b, count(*) " +
        "FROM inserted WHERE endpoint = 'messages' AND status < 400 AND ttfb_ms IS NOT NULL AND ttfb_ms < 1e9 " +
        "GROUP BY day, model, b ORDER BY day, model, b " +
        "ON CONFLICT (bucket_start, model, bucket) DO UPDATE SET requests = r.requests + EXCLUDED.requests";

    // Only rows new to usage_events reach the rollups, so a replayed batch is never counted twice.
    public static readonly string MergeStaging =
        $"WITH inserted AS (INSERT INTO usage_events ({UsageColumns.List}) SELECT {UsageColumns.List} FROM usage_staging ON CONFLICT (id) DO NOTHING RETURNING *), " +
        $"hourly AS ({Rollup("h", "hour")} RETURNING 1), " +
        // Weeks (from Monday) and months too, so that a page over a year reads a few dozen rows per device, not hundreds.
        $"weekly AS ({Rollup("w", "week")} RETURNING 1), " +
        $"monthly AS ({Rollup("m", "month")} RETURNING 1), " +
        $"users AS ({UserRollup("d", "day")} RETURNING 1), " +
        $"users_weekly AS ({UserRollup("w", "week")} RETURNING 1), " +
        $"users_monthly AS ({UserRollup("m", "month")} RETURNING 1), " +
        $"groups AS ({GroupRollup} RETURNING 1), " +
        $"models AS ({ModelRollup} RETURNING 1), " +
        $"sessions AS ({SessionRollup} RETURNING 1), " +
        $"ttft AS ({TtftRollup} RETURNING 1) " +
        Rollup("d", "day");
}

