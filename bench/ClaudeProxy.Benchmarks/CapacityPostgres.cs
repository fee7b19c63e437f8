using System.Diagnostics;
using System.Globalization;
using ClaudeProxy.Gateway.Usage;
using Npgsql;

namespace ClaudeProxy.Benchmarks;

/// <summary>
/// What one usage writer costs Postgres: batches of realistic usage events stored the way the gateway's
/// <see cref="UsageWriter"/> stores them (the staging table, binary COPY, then the one statement that inserts into
/// <c>usage_events</c> and adds to every rollup, in one transaction), one batch after another on one connection.
/// Postgres's CPU time is the postmaster's and all its children's (backends, WAL writer, checkpointer, autovacuum)
/// over the phase. Prints one markdown table row per batch size.
/// </summary>
public static class CapacityPostgres
{
    private static readonly string[] Models = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"];

    public static async Task<int> RunAsync(string connectionString, int rows, int[] batchSizes, int devices)
    {
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await using var connection = await dataSource.OpenConnectionAsync();
        int postmaster;
        await using (var who = new NpgsqlCommand("SELECT pg_backend_pid()", connection))
        {
            postmaster = ParentOf((int)(await who.ExecuteScalarAsync())!);
        }
        var random = new Random(7);
        var ids = Enumerable.Range(0, devices).Select(i => $"dev-{i:D6}").ToArray();
        var sessions = ids.Select(_ => Guid.NewGuid().ToString()).ToArray();
        UsageEvent Next(DateTimeOffset now)
        {
            var d = random.Next(ids.Length);
            var model = Models[random.Next(10) switch { < 6 => 0, < 9 => 1, _ => 2 }];
            var input = random.Next(5, 4000);
            var output = random.Next(20, 2000);
            return new UsageEvent
            {
                Id = Guid.NewGuid(),
                Time = now,
                DeviceId = ids[d],
                UserId = $"usr_{d:D6}",
                UserEmail = $"dev{d}@example.com",
                OrgId = "default",
                SessionId = sessions[d],
                AgentId = random.Next(4) == 0 ? Guid.NewGuid().ToString("N")[..12] : null,
                Model = model,
                Endpoint = "messages",
                Status = random.Next(100) == 0 ? 529 : 200,
                Streamed = true,
                InputTokens = input,
                OutputTokens = output,
                CacheReadTokens = random.Next(0, 80_000),
                CacheWrite5mTokens = random.Next(0, 3000),
                CostUsd = Math.Round((input * 3m + output * 15m) / 1_000_000m, 6),
                LatencyMs = random.Next(300, 30_000),
                TimeToFirstByteMs = random.Next(200, 3000),
                UpstreamRequestId = "req_" + Guid.NewGuid().ToString("N"),
                CorrelationId = Guid.NewGuid().ToString("N"),
                GroupIds = $"grp_{d % 20:D4}",
            };
        }

        // Unmeasured: the tables, their indexes and the rollup rows of these devices exist, as in a running system.
        await StoreAsync(connection, Enumerable.Range(0, Math.Min(rows, 5000)).Select(_ => Next(DateTimeOffset.UtcNow)).ToList());

        Console.WriteLine("| batch | rows | wall s | rows/s (one writer) | Postgres CPU s | Postgres CPU ms per 1,000 rows | writer CPU ms per 1,000 rows | WAL per row |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        using var self = Process.GetCurrentProcess();
        foreach (var size in batchSizes)
        {
            var batches = Enumerable.Range(0, Math.Max(1, rows / size))
                .Select(_ => Enumerable.Range(0, size).Select(_ => Next(DateTimeOffset.UtcNow)).ToList()).ToList();
            var wal = await WalAsync(connection);
            var cpu = ClusterCpu(postmaster);
            self.Refresh();
            var own = self.TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            foreach (var batch in batches)
            {
                await StoreAsync(connection, batch);
            }
            var wall = clock.Elapsed.TotalSeconds;
            var used = (ClusterCpu(postmaster) - cpu).TotalSeconds;
            self.Refresh();
            var writer = (self.TotalProcessorTime - own).TotalSeconds;
            var stored = batches.Count * size;
            var walBytes = await WalAsync(connection) - wal;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {size} | {stored} | {wall:F1} | {stored / wall:F0} | {used:F2} | {1000 * 1000 * used / stored:F1} | {1000 * 1000 * writer / stored:F1} | {walBytes / stored:F0} B |"));
        }
        // Several gateways' writers at once, each on its own connection with its own rows (the devices overlap, as
        // behind a load balancer): do their merges add up, or take turns on the rows they share?
        Console.WriteLine();
        Console.WriteLine("| writers at once (batches of 500) | rows | wall s | rows/s in all | Postgres CPU ms per 1,000 rows | samples with a writer waiting for a lock | failed batches |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var writers in new[] { 1, 2, 4 })
        {
            const int size = 500;
            var perWriter = Math.Max(1, rows / size / writers);
            var work = Enumerable.Range(0, writers).Select(_ => Enumerable.Range(0, perWriter)
                .Select(_ => Enumerable.Range(0, size).Select(_ => Next(DateTimeOffset.UtcNow)).ToList()).ToList()).ToList();
            var connections = new List<NpgsqlConnection>();
            for (var i = 0; i < writers; i++)
            {
                connections.Add(await dataSource.OpenConnectionAsync());
            }
            var cpu = ClusterCpu(postmaster);
            var clock = Stopwatch.StartNew();
            var failed = 0;
            var running = Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
            {
                foreach (var batch in work[w])
                {
                    try
                    {
                        await StoreAsync(connections[w], batch);
                    }
                    catch (PostgresException)
                    {
                        Interlocked.Increment(ref failed);
                    }
                }
            })).ToArray();
            long samples = 0, waiting = 0;
            await using (var probe = new NpgsqlCommand(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()", connection))
            {
                while (!running.All(t => t.IsCompleted))
                {
                    samples++;
                    if ((long)(await probe.ExecuteScalarAsync())! > 0)
                    {
                        waiting++;
                    }
                    await Task.Delay(10);
                }
            }
            await Task.WhenAll(running);
            var wall = clock.Elapsed.TotalSeconds;
            var used = (ClusterCpu(postmaster) - cpu).TotalSeconds;
            foreach (var c in connections)
            {
                await c.DisposeAsync();
            }
            var stored = writers * perWriter * size;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {writers} | {stored} | {wall:F1} | {stored / wall:F0} | {1000 * 1000 * used / stored:F1} | {100.0 * waiting / Math.Max(1, samples):F0} % of {samples} | {failed} |"));
        }

        await using (var sizes = new NpgsqlCommand(
            "SELECT pg_total_relation_size('usage_events')::float8 / greatest(count(*), 1), count(*), " +
            "(SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE '%rollups')::float8 " +
            "FROM usage_events", connection))
        await using (var reader = await sizes.ExecuteReaderAsync())
        {
            await reader.ReadAsync();
            Console.WriteLine();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Storage: `usage_events` holds {reader.GetInt64(1)} rows in {reader.GetDouble(0):F0} bytes a row, its indexes and TOAST included; " +
                $"the rollup tables hold {reader.GetDouble(2) / 1_048_576:F1} MB for these {devices} devices."));
        }
        return 0;
    }

    private static async Task<double> WalAsync(NpgsqlConnection connection)
    {
        await using var command = new NpgsqlCommand("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8", connection);
        return (double)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The gateway's <c>UsageWriter.InsertAsync</c>, statement for statement.</summary>
    private static async Task StoreAsync(NpgsqlConnection connection, IReadOnlyList<UsageEvent> batch)
    {
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var create = new NpgsqlCommand(UsageSql.CreateStaging, connection, transaction))
        {
            await create.ExecuteNonQueryAsync();
        }
        await using (var importer = await connection.BeginBinaryImportAsync(UsageSql.CopyStaging))
        {
            foreach (var e in batch)
            {
                UsageColumns.WriteRow(importer, e);
            }
            await importer.CompleteAsync();
        }
        await using (var merge = new NpgsqlCommand(UsageSql.MergeStaging, connection, transaction))
        {
            await merge.ExecuteNonQueryAsync();
        }
        await transaction.CommitAsync();
    }

    private static TimeSpan ClusterCpu(int postmaster)
    {
        var total = TimeSpan.Zero;
        foreach (var pid in new[] { postmaster }.Concat(ChildrenOf(postmaster)))
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                total += process.TotalProcessorTime;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                // Gone between the listing and the reading (an autovacuum worker): its time is not counted.
            }
        }
        return total;
    }

    /// <summary>Field 4 of /proc/PID/stat, after the command name in parentheses.</summary>
    internal static int ParentOf(int pid)
    {
        var text = File.ReadAllText($"/proc/{pid}/stat");
        var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(fields[1], CultureInfo.InvariantCulture);
    }

    internal static IEnumerable<int> ChildrenOf(int parent)
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid))
            {
                continue;
            }
            int ppid;
            try
            {
                ppid = ParentOf(pid);
            }
            catch (IOException)
            {
                continue;
            }
            if (ppid == parent)
            {
                yield return pid;
            }
        }
    }
}
