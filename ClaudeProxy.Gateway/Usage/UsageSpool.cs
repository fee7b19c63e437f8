using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Telemetry;
using Npgsql;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// The disk spool for usage events Postgres cannot take right now: one JSON line per event, flushed to disk before a
/// batch counts as kept, shared safely by any number of processes.
/// <para>
/// Ownership: each spool (one per process) has an id and holds <c>writer-{id}.lock</c> exclusively while it lives. It
/// appends only to its own <c>usage-{id}-{n}.jsonl</c>, whose first line names the database (and organisation) the
/// events belong to. A replayer takes a file by renaming it to <c>….replaying-{its id}</c>; after that rename nobody
/// else touches it. A replayer takes its own file, and another spool's files only when that spool's lock is free (its
/// process is gone) and the header names the replayer's database; a live writer's file is never taken from under it,
/// and a writer that finds its file gone starts a new one. A file that cannot be replayed is renamed
/// <c>….quarantined</c>, with the reason beside it in <c>….quarantined.reason</c>, and the files behind it go on.
/// </para>
/// </summary>
public sealed partial class UsageSpool : IDisposable
{
    /// <summary>Events read from a file per call of the store callback.</summary>
    public const int ReplayBatch = 1000;
    private const string HeaderKind = "claudeproxy-usage-spool";
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    private readonly Lock _gate = new();
    private readonly GatewayMetrics? _metrics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly HashSet<string> _stuck = new(StringComparer.Ordinal);
    private FileStream? _ownLock;
    private string? _active;
    private int _sequence;

    public UsageSpool(SpoolLocation location, GatewayMetrics? metrics = null, ILogger<UsageSpool>? logger = null, TimeProvider? time = null)
    {
        _metrics = metrics;
        _logger = (ILogger?)logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _time = time ?? TimeProvider.System;
        Database = location.Database;
        Directory = location.Directory;
        Id = Guid.NewGuid().ToString("N")[..16];
        EnsurePrivateDirectory(Directory);
        _ownLock = new FileStream(LockPath(Id), FileMode.Create, FileAccess.ReadWrite, FileShare.None);
    }

    /// <summary>The folder, private to this user (0700).</summary>
    public string Directory { get; }

    /// <summary>The database this spool's events belong to; replay takes only files that name it.</summary>
    public SpoolDatabase Database { get; }

    /// <summary>This spool's id: its lock, its files and the files it replays carry it.</summary>
    public string Id { get; }

    /// <summary>Spool files in the folder waiting to be replayed (by this process or another), quarantined ones left out.</summary>
    public int PendingFiles => Files("usage-*").Count(f => !f.EndsWith(".quarantined", StringComparison.Ordinal) && !f.EndsWith(".reason", StringComparison.Ordinal));

    /// <summary>Files set aside because they could not be replayed.</summary>
    public int QuarantinedFiles => Files("*.quarantined").Count;

    private List<string> Files(string pattern)
    {
        try
        {
            return System.IO.Directory.EnumerateFiles(Directory, pattern).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    private string LockPath(string id) => Path.Combine(Directory, $"writer-{id}.lock");

    /// <summary>Appends the events to this process's own file and flushes it to disk. Never blocked by a replayer.</summary>
    public void Append(IReadOnlyList<UsageEvent> events)
    {
        if (events.Count == 0)
        {
            return;
        }
        lock (_gate)
        {
            for (var attempt = 0; ; attempt++)
            {
                FileStream file;
                try
                {
                    if (_active is null)
                    {
                        EnsurePrivateDirectory(Directory);
                        var path = Path.Combine(Directory, $"usage-{Id}-{++_sequence:D6}.jsonl");
                        file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite, 64 * 1024);
                        _active = path;
                        JsonSerializer.Serialize(file, Header(), UsageSpoolJsonContext.Default.SpoolHeader);
                        file.WriteByte((byte)'\n');
                    }
                    else
                    {
                        file = new FileStream(_active, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 64 * 1024);
                        file.Seek(0, SeekOrigin.End);
                    }
                }
                catch (Exception e) when (attempt < 3 && e is FileNotFoundException or DirectoryNotFoundException or IOException)
                {
                    // The file was taken for replay (or the folder was emptied): this writer starts a new file.
                    _active = null;
                    continue;
                }
                using (file)
                {
                    foreach (var e in events)
                    {
                        JsonSerializer.Serialize(file, e, UsageSpoolJsonContext.Default.UsageEvent);
                        file.WriteByte((byte)'\n');
                    }
                    file.Flush(flushToDisk: true);
                }
                return;
            }
        }
    }

    /// <summary>Keeps a refused event (or an unreadable spool line) in <c>dead-letters-{id}.jsonl</c>, for when Postgres cannot take it either.</summary>
    public void AppendDeadLetter(DeadLetterLine letter)
    {
        lock (_gate)
        {
            EnsurePrivateDirectory(Directory);
            using var file = new FileStream(Path.Combine(Directory, $"dead-letters-{Id}.jsonl"), FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            JsonSerializer.Serialize(file, letter, UsageSpoolJsonContext.Default.DeadLetterLine);
            file.WriteByte((byte)'\n');
            file.Flush(flushToDisk: true);
        }
    }

    private SpoolHeader Header() => new(HeaderKind, 1, Database.Fingerprint, Database.Label, Database.Org, Id, _time.GetUtcNow());

    /// <summary>
    /// Replays every file of this database that nobody else owns: <paramref name="store"/> gets the events in batches
    /// (it must store them idempotently), <paramref name="refuse"/> gets lines that are not events. A file is deleted once
    /// stored. An exception from either callback (Postgres unreachable) stops the replay and leaves the file owned by this
    /// spool for the next attempt; a file that cannot be read is quarantined and the next one is taken. Returns how many
    /// events were stored.
    /// </summary>
    public async Task<int> ReplayAsync(Func<IReadOnlyList<UsageEvent>, CancellationToken, Task> store, Func<string, string, CancellationToken, Task> refuse,
        CancellationToken cancellationToken = default)
    {
        var total = 0;
        foreach (var path in Files("usage-*").Order(StringComparer.Ordinal))
        {
            if (Take(path) is not { } taken)
            {
                continue;
            }
            total += await ReplayFileAsync(taken, store, refuse, cancellationToken);
        }
        return total;
    }

    /// <summary>Takes <paramref name="path"/> for replay by renaming it to this spool's replaying name, or returns null when it is not this spool's to take.</summary>
    private string? Take(string path)
    {
        var name = Path.GetFileName(path);
        if (name.EndsWith(".quarantined", StringComparison.Ordinal) || name.EndsWith(".reason", StringComparison.Ordinal) || _stuck.Contains(name))
        {
            return null;
        }
        var replayingAt = name.IndexOf(".replaying-", StringComparison.Ordinal);
        var baseName = replayingAt < 0 ? name : name[..replayingAt];
        var owner = replayingAt < 0 ? OwnerOf(baseName) : name[(replayingAt + ".replaying-".Length)..];
        var mine = Path.Combine(Directory, $"{baseName}.replaying-{Id}");
        if (owner == Id)
        {
            if (replayingAt >= 0)
            {
                return path;
            }
            lock (_gate)
            {
                // This writer's own file: the next append starts a new one.
                if (_active == path)
                {
                    _active = null;
                }
                return Rename(path, mine) ? mine : null;
            }
        }
        if (owner is not null && IsAlive(owner))
        {
            return null;
        }
        switch (ReadHeader(path))
        {
            case { } header when header.Database == Database.Fingerprint:
                return Rename(path, mine) ? mine : null;
            case not null:
                return null; // Another database's events: its own gateways replay them.
            case null when new FileInfo(path) is { Exists: true, Length: 0 }:
                // Created but never written: nothing in it was ever acknowledged.
                TryDelete(path);
                return null;
            default:
                return Rename(path, mine) ? mine : null; // Unreadable: replaying it quarantines it.
        }
    }

    private static string? OwnerOf(string baseName)
    {
        // usage-{id}-{n}.jsonl; older versions wrote usage-{guid}.jsonl, with no owner and no header.
        var parts = Path.GetFileNameWithoutExtension(baseName).Split('-');
        return parts.Length == 3 ? parts[1] : null;
    }

    private bool IsAlive(string owner)
    {
        var path = LockPath(owner);
        if (!File.Exists(path))
        {
            return false;
        }
        try
        {
            using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            {
            }
            TryDelete(path);
            return false;
        }
        catch (IOException)
        {
            return true; // Its process holds the lock.
        }
        catch (UnauthorizedAccessException)
        {
            return true;
        }
    }

    private static SpoolHeader? ReadHeader(string path)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(file, Encoding.UTF8);
            return ParseHeader(reader.ReadLine());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static SpoolHeader? ParseHeader(string? line)
    {
        if (line is null || !line.StartsWith('{'))
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize(line, UsageSpoolJsonContext.Default.SpoolHeader) is { Kind: HeaderKind, Database.Length: > 0 } header ? header : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private bool Rename(string from, string to)
    {
        try
        {
            // rename(2): of two replayers renaming the same file, exactly one succeeds.
            File.Move(from, to, overwrite: true);
            return true;
        }
        catch (FileNotFoundException)
        {
            return false; // Another replayer took it first.
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _stuck.Add(Path.GetFileName(from));
            LogCannotTake(_logger, Path.GetFileName(from), e.Message);
            return false;
        }
    }

    private async Task<int> ReplayFileAsync(string path, Func<IReadOnlyList<UsageEvent>, CancellationToken, Task> store,
        Func<string, string, CancellationToken, Task> refuse, CancellationToken cancellationToken)
    {
        var total = 0;
        try
        {
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 64 * 1024, useAsync: true);
            using var reader = new StreamReader(file, new UTF8Encoding(false, throwOnInvalidBytes: true));
            var header = ParseHeader(await ReadLineAsync(reader, cancellationToken));
            if (header is null)
            {
                if (file.Length == 0)
                {
                    TryDelete(path);
                    return 0;
                }
                throw new SpoolFileException("the first line is not a spool header, so the database its events belong to is unknown");
            }
            if (header.Database != Database.Fingerprint)
            {
                throw new SpoolFileException($"it belongs to another database ({header.DatabaseLabel}, organisation {header.Org})");
            }
            var batch = new List<UsageEvent>(ReplayBatch);
            var line = await ReadLineAsync(reader, cancellationToken);
            while (line is not null)
            {
                var next = await ReadLineAsync(reader, cancellationToken);
                if (line.Length > 0)
                {
                    UsageEvent? item = null;
                    try
                    {
                        item = JsonSerializer.Deserialize(line, UsageSpoolJsonContext.Default.UsageEvent);
                    }
                    catch (JsonException e) when (next is not null)
                    {
                        await refuse(line, "unreadable spool line: " + e.Message, cancellationToken);
                    }
                    catch (JsonException)
                    {
                        // The last line cut short by a crash mid-write: its batch was never acknowledged.
                    }
                    if (item is not null)
                    {
                        batch.Add(item);
                    }
                }
                if (batch.Count == ReplayBatch)
                {
                    await store(batch, cancellationToken);
                    total += batch.Count;
                    batch.Clear();
                }
                line = next;
            }
            if (batch.Count > 0)
            {
                await store(batch, cancellationToken);
                total += batch.Count;
            }
        }
        catch (SpoolFileException e)
        {
            Quarantine(path, e.Message);
            return total;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && !cancellationToken.IsCancellationRequested)
        {
            Quarantine(path, BackgroundHealth.Describe(e));
            return total;
        }
        TryDelete(path);
        return total;
    }

    private static async Task<string?> ReadLineAsync(StreamReader reader, CancellationToken cancellationToken)
    {
        try
        {
            return await reader.ReadLineAsync(cancellationToken);
        }
        catch (DecoderFallbackException e)
        {
            throw new SpoolFileException("it is not UTF-8 text: " + e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SpoolFileException("it could not be read: " + e.Message);
        }
    }

    private void Quarantine(string path, string reason)
    {
        var name = Path.GetFileName(path);
        var replayingAt = name.IndexOf(".replaying-", StringComparison.Ordinal);
        var target = Path.Combine(Directory, (replayingAt < 0 ? name : name[..replayingAt]) + ".quarantined");
        try
        {
            File.Move(path, target, overwrite: false);
            File.WriteAllText(target + ".reason", $"{_time.GetUtcNow():O} quarantined by spool {Id}: {reason}\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _stuck.Add(name);
        }
        _metrics?.SpoolQuarantined();
        LogQuarantined(_logger, name, reason);
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// The spool's place for this deployment (see <see cref="ResolveDirectory"/>). Throws <see cref="GatewayConfigurationException"/>
    /// when no private folder can be made.
    /// </summary>
    public static SpoolLocation Locate(IConfiguration configuration, string connectionString)
    {
        var database = SpoolDatabase.From(connectionString, configuration.Settings().Text(S.OrgId)!);
        return new SpoolLocation(ResolveDirectory(configuration, database), database);
    }

    /// <summary>
    /// <c>USAGE_SPOOL_DIR</c> when set, else a folder for this deployment (its database and organisation):
    /// <c>$XDG_STATE_HOME/claudeproxy/{fingerprint}</c>, <c>~/.local/state/claudeproxy/{fingerprint}</c>, or
    /// <c>$TMPDIR/claudeproxy-{uid}/{fingerprint}</c>, the first that can be made private to this user (0700).
    /// </summary>
    public static string ResolveDirectory(IConfiguration configuration, SpoolDatabase database)
    {
        var settings = configuration.Settings();
        if (settings.Text(S.UsageSpoolDir) is { } configured)
        {
            var full = Path.GetFullPath(configured);
            if (TryPrivate(full))
            {
                return full;
            }
            // A mounted volume this user does not own (Kubernetes emptyDir): a private folder inside it.
            var inside = Path.Combine(full, $"claudeproxy-{UserId()}");
            return TryPrivate(inside) ? inside
                : throw new GatewayConfigurationException($"USAGE_SPOOL_DIR ({configured}) must be a folder this process can create or own and make private (0700).");
        }
        var fingerprint = database.DeploymentFingerprint;
        var candidates = new List<string>();
        if (settings.Text(S.XdgStateHome) is { } state && Path.IsPathRooted(state))
        {
            candidates.Add(Path.Combine(state, "claudeproxy", fingerprint));
        }
        if (settings.Text(S.Home) is { Length: > 1 } home && Path.IsPathRooted(home))
        {
            candidates.Add(Path.Combine(home, ".local", "state", "claudeproxy", fingerprint));
        }
        var temp = settings.Text(S.TmpDir) is { } tmp && Path.IsPathRooted(tmp) ? tmp : Path.GetTempPath();
        candidates.Add(Path.Combine(temp, $"claudeproxy-{UserId()}", fingerprint));
        foreach (var candidate in candidates)
        {
            if (TryPrivate(Path.GetDirectoryName(candidate)!) && TryPrivate(candidate))
            {
                return candidate;
            }
        }
        throw new GatewayConfigurationException($"No private folder for the usage spool could be made (tried {string.Join(", ", candidates)}): set USAGE_SPOOL_DIR.");
    }

    private static bool TryPrivate(string path)
    {
        try
        {
            EnsurePrivateDirectory(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Creates the folder 0700, or makes an existing one 0700 (which only its owner can do).</summary>
    internal static void EnsurePrivateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            System.IO.Directory.CreateDirectory(path);
            return;
        }
        var info = System.IO.Directory.CreateDirectory(path, Private);
        if (info.UnixFileMode != Private)
        {
            File.SetUnixFileMode(path, Private);
        }
    }

    /// <summary>The effective uid on Linux (from <c>/proc/self/status</c>), else the user name.</summary>
    private static string UserId()
    {
        try
        {
            var uid = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal))?
                .Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (uid is { Length: > 2 } && uint.TryParse(uid[2], CultureInfo.InvariantCulture, out var effective))
            {
                return effective.ToString(CultureInfo.InvariantCulture);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return Environment.UserName;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _ownLock?.Dispose();
            _ownLock = null;
            TryDelete(LockPath(Id));
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Spool file {File} could not be replayed and was quarantined: {Reason}")]
    private static partial void LogQuarantined(ILogger logger, string file, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Spool file {File} could not be taken for replay ({Reason}); it is left where it is")]
    private static partial void LogCannotTake(ILogger logger, string file, string reason);
}

/// <summary>Where a spool lives and which database its files belong to.</summary>
public sealed record SpoolLocation(string Directory, SpoolDatabase Database);

/// <summary>Which database a spool file's events belong to: a fingerprint of the connection's host, port and database, and the organisation.</summary>
public sealed record SpoolDatabase(string Fingerprint, string Label, string Org)
{
    /// <summary>A fingerprint of the database and organisation together: the default spool folder's name.</summary>
    public string DeploymentFingerprint => Hash(Fingerprint + "\n" + Org);

    public static SpoolDatabase From(string connectionString, string org)
    {
        var csb = new NpgsqlConnectionStringBuilder(connectionString);
        var host = (csb.Host ?? "localhost").Trim().ToLowerInvariant();
        var database = csb.Database is { Length: > 0 } db ? db : csb.Username ?? "postgres";
        var label = $"{host}:{csb.Port}/{database}";
        return new SpoolDatabase(Hash(label), label, org);
    }

    private static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("claudeproxy-spool\n" + text)))[..16];
}

/// <summary>The first line of every spool file.</summary>
public sealed record SpoolHeader(string Kind, int Version, string Database, string DatabaseLabel, string Org, string Writer, DateTimeOffset Created);

/// <summary>A dead letter kept on disk: the same fields as a <c>usage_dead_letters</c> row.</summary>
public sealed record DeadLetterLine(DateTimeOffset Time, Guid? EventId, string Source, string Reason, string Payload);

/// <summary>A spool file that cannot be replayed, and why.</summary>
public sealed class SpoolFileException(string message) : Exception(message);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(SpoolHeader))]
[JsonSerializable(typeof(DeadLetterLine))]
[JsonSerializable(typeof(UsageEvent))]
[JsonSerializable(typeof(string))]
internal sealed partial class UsageSpoolJsonContext : JsonSerializerContext;
