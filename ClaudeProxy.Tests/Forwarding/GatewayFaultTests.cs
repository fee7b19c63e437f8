using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Npgsql;
using Xunit.Abstractions;

namespace ClaudeProxy.Tests.Forwarding;

/// <summary>Tests that stop shared servers and kill processes run alone, so that nothing else competes with their timing.</summary>
[CollectionDefinition(nameof(FaultCollection), DisableParallelization = true)]
public sealed class FaultCollection;

/// <summary>
/// Three gateway processes sharing one Redis, one PostgreSQL database and one spool folder, under steady mixed load,
/// while Redis is away for 10 s (frozen, then stopped), Postgres is stopped for 15 s, and one instance is killed with
/// SIGKILL and started again.
/// Afterwards every answer is matched with its usage row.
/// </summary>
[Collection(nameof(FaultCollection))]
public sealed class GatewayFaultTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Instances = 3;
    private const int Clients = 12;
    private const int CappedClients = 2; // clients 0 and 1
    private const int MaxRequestsPerClient = 4000;
    private const int FlushMs = 250;
    // The first capped device (streaming, slower) is still spending when Redis goes away; the second reaches its cap
    // within the first seconds, before any fault.
    private static readonly decimal[] Caps = [0.60m, 0.25m];
    private const string Model = "claude-sonnet-4-5-20250929";
    private const string CappedBody = """{"model":"claude-sonnet-4-5-20250929","max_tokens":1000,"messages":[{"role":"user","content":"Hi"}]}""";
    private const string CappedStreamBody = """{"model":"claude-sonnet-4-5-20250929","max_tokens":1000,"stream":true,"messages":[{"role":"user","content":"Hi"}]}""";

    // A lost row is one whose batch had not reached Postgres when the process died: at most one flush interval of
    // gathering, plus the COPY transaction itself, which on two shared cores under this load can take a while.
    private static readonly TimeSpan WriteAllowance = TimeSpan.FromMilliseconds(750);
    private static readonly TimeSpan LossWindow = TimeSpan.FromMilliseconds(FlushMs) + WriteAllowance;

    private readonly string _master = TestSecrets.MasterKey();
    private readonly string _secret = TestSecrets.JwtSecret();
    private readonly string _spool = Directory.CreateTempSubdirectory("claudeproxy-fault-spool-").FullName;
    private RedisServer _redis = null!;
    private PostgresServer _postgres = null!;
    private SimulatorHost _simulator = null!;
    private string _db = null!;
    private readonly List<RunningGateway> _processes = [];

    public async Task InitializeAsync()
    {
        var redis = RedisServer.StartAsync();
        var postgres = PostgresServer.StartAsync();
        _simulator = await SimulatorHost.StartAsync(_master);
        _redis = await redis;
        _postgres = await postgres;
        _db = await _postgres.CreateDatabaseAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }
        await _simulator.DisposeAsync();
        await _redis.DisposeAsync();
        await _postgres.DisposeAsync();
        try
        {
            Directory.Delete(_spool, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private sealed record Outcome(
        string Tag, int Client, RunningGateway Process, bool Streaming, bool Capped, TimeSpan CompletedAt,
        int? Status, bool Forwarded, bool Complete, string? Failure);

    /// <summary>What each instance slot runs now; null while its process is down.</summary>
    private readonly RunningGateway?[] _slots = new RunningGateway?[Instances];

    private Dictionary<string, string> Environment() => new()
    {
        ["ANTHROPIC_API_KEY"] = _master,
        ["ANTHROPIC_BASE_URL"] = _simulator.BaseUrl.ToString(),
        ["JWT_SECRET"] = _secret,
        ["REDIS_URL"] = _redis.Url,
        ["REDIS_FAILURE_MODE"] = "open",
        ["DATABASE_URL"] = _postgres.Url(_db),
        ["USAGE_SPOOL_DIR"] = _spool,
        ["USAGE_FLUSH_MS"] = FlushMs.ToString(CultureInfo.InvariantCulture),
        ["RATE_LIMIT_MAX"] = "1000000",
        ["SPEND_CAP_PERIOD"] = "month",
        ["LOG_LEVEL"] = "warn",
    };

    private async Task<RunningGateway> LaunchAsync(int slot)
    {
        var process = await GatewayProcess.StartAsync(Environment(), $"gateway-{slot}-{_processes.Count(p => p.Name.StartsWith($"gateway-{slot}-", StringComparison.Ordinal))}");
        lock (_processes)
        {
            _processes.Add(process);
        }
        Volatile.Write(ref _slots[slot], process);
        return process;
    }

    private void Say(string line)
    {
        output.WriteLine(line);
        Console.WriteLine(line);
    }

    [Fact]
    public async Task Redis_and_postgres_outages_and_a_killed_instance_lose_nothing_answered_and_duplicate_nothing()
    {
        // Three instances start together: the first to take the advisory lock migrates, the others wait their turn.
        await Task.WhenAll(Enumerable.Range(0, Instances).Select(LaunchAsync)).WaitAsync(TimeSpan.FromMinutes(3));

        var prices = PriceBook.Load(new ConfigurationBuilder().Build());
        var worstCase = prices.WorstCase(Model, Encoding.UTF8.GetByteCount(CappedStreamBody) / 4 + 1, 1000);
        var devices = Enumerable.Range(0, Clients).Select(i => TestSecrets.DeviceId(i < CappedClients ? "fault-capped" : "fault")).ToArray();
        var tokens = devices.Select((d, i) =>
        {
            var claims = new Dictionary<string, object> { ["rate_limit"] = 1_000_000 };
            if (i < CappedClients)
            {
                claims["spend_cap"] = (double)Caps[i];
            }
            return TokenForge.Make(_secret, deviceId: d, expires: DateTime.UtcNow.AddHours(2), claims: claims);
        }).ToArray();

        var clock = Stopwatch.StartNew();
        var outcomes = new ConcurrentQueue<Outcome>();
        var exits = new ConcurrentDictionary<RunningGateway, TimeSpan>();
        var forwardedBy = new ConcurrentDictionary<RunningGateway, long>();
        using var stop = new CancellationTokenSource();
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(5) })
        {
            Timeout = TimeSpan.FromSeconds(60),
        };

        RunningGateway? Pick(int start)
        {
            for (var i = 0; i < Instances; i++)
            {
                var candidate = Volatile.Read(ref _slots[(start + i) % Instances]);
                if (candidate is null)
                {
                    continue;
                }
                if (candidate.ExitedByItself)
                {
                    exits.TryAdd(candidate, clock.Elapsed);
                    continue;
                }
                return candidate;
            }
            return null;
        }

        async Task ClientAsync(int client)
        {
            var streaming = client % 2 == 0;
            var capped = client < CappedClients;
            for (var i = 0; i < MaxRequestsPerClient && !stop.IsCancellationRequested; i++)
            {
                if (Pick(client + i) is not { } process)
                {
                    await Task.Delay(50);
                    continue;
                }
                var tag = $"fault-{client}-{i}-{Guid.NewGuid():N}";
                var body = capped ? (streaming ? CappedStreamBody : CappedBody) : (streaming ? Http.StreamMessage : Http.SmallMessage);
                var headers = new List<(string, string)> { ("x-request-id", tag), ("x-claude-code-session-id", tag) };
                if (streaming)
                {
                    headers.Add(("x-sim-events", "5"));
                    headers.Add(("x-sim-delay-ms", "20"));
                }
                if (capped)
                {
                    headers.Add(("x-sim-input-tokens", "20"));
                    headers.Add(("x-sim-output-tokens", "1000"));
                }
                using var request = Http.Post(new Uri(process.BaseUrl, "/v1/messages").ToString(), body, bearer: tokens[client], headers: [.. headers]);
                try
                {
                    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                    var text = await response.Content.ReadAsStringAsync();
                    var forwarded = response.Headers.TryGetValues("request-id", out var ids) && ids.Single().StartsWith("req_sim_", StringComparison.Ordinal);
                    var complete = !streaming || (int)response.StatusCode != 200 || text.Contains("message_stop", StringComparison.Ordinal);
                    var outcome = new Outcome(tag, client, process, streaming, capped, clock.Elapsed, (int)response.StatusCode, forwarded, complete,
                        (int)response.StatusCode == 200 ? null : text);
                    outcomes.Enqueue(outcome);
                    if (ExpectsRow(outcome))
                    {
                        forwardedBy.AddOrUpdate(process, 1, (_, n) => n + 1);
                    }
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                    outcomes.Enqueue(new Outcome(tag, client, process, streaming, capped, clock.Elapsed, null, false, false, e.GetType().Name));
                }
                await Task.Delay(20);
            }
        }

        var load = Enumerable.Range(0, Clients).Select(c => Task.Run(() => ClientAsync(c))).ToArray();
        void Mark(string what)
        {
            Say($"fault test: {clock.Elapsed.TotalSeconds,6:0.0} s  {what}");
        }

        long Forwarded() => forwardedBy.Values.Sum();
        bool CapReachedEarly() => outcomes.Any(o => o.Client == CappedClients - 1 && o.Status == 429);

        // Each fault starts once the instances are serving steadily again: a number of answers, not a guess of time.
        async Task SteadyAsync(string after, Func<bool>? also = null)
        {
            var from = Forwarded();
            var since = Stopwatch.StartNew();
            await UntilAsync(() => Forwarded() - from >= 300 && since.Elapsed >= TimeSpan.FromSeconds(3) && (also?.Invoke() ?? true), TimeSpan.FromSeconds(90),
                $"300 requests forwarded after {after}");
        }

        RunningGateway? killed = null;
        var killedAt = TimeSpan.Zero;
        string? interrupted = null;
        try
        {
            Mark("load started");
            await SteadyAsync("start", CapReachedEarly);

            // Redis is gone for 10 s: first it stops answering on open connections (commands time out), then it is
            // stopped (connections refused), then started again with the data it saved.
            _redis.Freeze();
            Mark("redis frozen (SIGSTOP)");
            await Task.Delay(TimeSpan.FromSeconds(6));
            _redis.Thaw();
            await _redis.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Mark("redis stopped (SHUTDOWN SAVE)");
            await Task.Delay(TimeSpan.FromSeconds(4));
            await _redis.StartAgainAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Mark("redis started again");
            await SteadyAsync("redis came back");

            Mark("postgres stopping");
            await _postgres.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Mark("postgres stopped");
            await Task.Delay(TimeSpan.FromSeconds(15));
            await _postgres.StartAgainAsync().WaitAsync(TimeSpan.FromSeconds(90));
            Mark("postgres started again");
            await SteadyAsync("postgres came back");

            var doomed = Volatile.Read(ref _slots[Instances - 1]) ?? throw new InvalidOperationException("the instance to kill is not running");
            killedAt = clock.Elapsed;
            killed = doomed;
            await doomed.KillAsync();
            Volatile.Write(ref _slots[Instances - 1], null);
            Mark($"{doomed.Name} killed (SIGKILL, pid {doomed.ProcessId})");
            await Task.Delay(TimeSpan.FromSeconds(2));
            var restarted = await LaunchAsync(Instances - 1).WaitAsync(TimeSpan.FromMinutes(2));
            Mark($"{restarted.Name} started in its place");
            await UntilAsync(() => forwardedBy.GetValueOrDefault(restarted) >= 100, TimeSpan.FromSeconds(90), $"100 requests forwarded by {restarted.Name}");
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            // Most often every instance has exited: the figures below say what was lost by then.
            interrupted = e.Message;
            Mark($"scenario interrupted: {e.Message}");
        }
        finally
        {
            stop.Cancel();
            await Task.WhenAll(load).WaitAsync(TimeSpan.FromSeconds(90));
            Mark("load stopped");
        }

        var all = outcomes.ToList();
        var survivors = _processes.Where(p => p != killed).ToList();
        foreach (var process in _processes.Where(p => p.ExitedByItself))
        {
            exits.TryAdd(process, clock.Elapsed);
        }

        // Rows of answers from instances still running must arrive without their shutdown's help.
        var expected = all.Where(o => o.Process != killed && ExpectsRow(o)).Select(o => o.Tag).ToHashSet();
        var rows = await RowsAsync();
        var waited = Stopwatch.StartNew();
        while (expected.Any(t => !rows.ContainsKey(t)) && waited.Elapsed < TimeSpan.FromSeconds(60) && exits.IsEmpty)
        {
            await Task.Delay(500);
            rows = await RowsAsync();
        }
        Mark($"rows settled after {waited.Elapsed.TotalSeconds:0.0} s");

        var stopCodes = new Dictionary<string, int?>();
        foreach (var process in survivors.Where(p => !p.ExitedByItself && p.ExitCode is null))
        {
            stopCodes[process.Name] = await process.StopAsync(TimeSpan.FromSeconds(60));
        }
        rows = await RowsAsync();
        var spoolLeft = Directory.EnumerateFiles(_spool, "usage-*.jsonl").Count();

        // The figures.
        var answered = all.Where(o => o.Status is not null && o.Complete).ToList();
        var forwarded = answered.Where(ExpectsRow).ToList();
        var refusedByGateway = answered.Where(o => !ExpectsRow(o)).ToList();
        var duplicated = rows.Where(r => r.Value > 1).ToList();
        var tags = all.Select(o => o.Tag).ToHashSet(StringComparer.Ordinal);
        var unknownRows = rows.Keys.Count(k => !tags.Contains(k));
        var missing = forwarded.Where(o => o.Process != killed && !rows.ContainsKey(o.Tag)).ToList();
        var refusedWithRow = refusedByGateway.Where(o => rows.ContainsKey(o.Tag)).ToList();
        var fromKilled = forwarded.Where(o => o.Process == killed).ToList();
        var lost = fromKilled.Where(o => !rows.ContainsKey(o.Tag)).ToList();
        var inLastWindow = fromKilled.Count(o => o.CompletedAt >= killedAt - LossWindow);
        var lostOutsideWindow = lost.Where(o => o.CompletedAt < killedAt - LossWindow).ToList();
        var capped = await CappedSpendAsync(devices[..CappedClients]);
        var unexpectedStatus = answered.Where(o => o.Capped ? o.Status is not (200 or 429 or 503) : o.Status != 200).ToList();

        Say($"fault test: requests {all.Count}, answered {answered.Count} ({string.Join(", ", answered.GroupBy(o => o.Status).OrderBy(g => g.Key).Select(g => $"{g.Key}: {g.Count()}"))}), " +
            $"unanswered or cut {all.Count - answered.Count} ({string.Join(", ", all.Where(o => o.Status is null || !o.Complete).GroupBy(o => o.Failure ?? "incomplete stream").Select(g => $"{g.Key}: {g.Count()}"))})");
        Say($"fault test: forwarded {forwarded.Count}, usage rows {rows.Count} ({rows.Values.Sum()} with duplicates), duplicated {duplicated.Count}, rows matching no request {unknownRows}");
        Say($"fault test: answered by instances not killed: {forwarded.Count - fromKilled.Count} forwarded, {missing.Count} without a row; refused by the gateway itself {refusedByGateway.Count}, {refusedWithRow.Count} with a row");
        Say($"fault test: killed instance answered {fromKilled.Count} forwarded requests; rows lost {lost.Count}, bound {inLastWindow} (answered in the last {LossWindow.TotalMilliseconds:0} ms = USAGE_FLUSH_MS {FlushMs} + {WriteAllowance.TotalMilliseconds:0} ms write), lost before that window {lostOutsideWindow.Count}" +
            (lost.Count > 0 ? $", oldest lost answered {(killedAt - lost.Min(o => o.CompletedAt)).TotalMilliseconds:0} ms before the kill" : ""));
        foreach (var (device, spent, count) in capped)
        {
            var client = Array.IndexOf(devices, device);
            var admittedAt = answered.Where(o => o.Client == client && o.Status == 200).Select(o => o.CompletedAt.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture));
            Say($"fault test: capped device {device}: {count} rows, spent {spent:0.000000} USD, cap {Caps[client]} USD, bound {CapBound(client):0.000000} USD " +
                $"(cap + {Instances} x worst case {worstCase:0.000000}); answered 200 at s {string.Join(' ', admittedAt)}");
        }
        Say($"fault test: instances that exited by themselves: {(exits.IsEmpty ? "none" : string.Join(", ", exits.Select(e => $"{e.Key.Name} (exit {e.Key.ExitCode}) at {e.Value.TotalSeconds:0.0} s")))}; " +
            $"stopped with SIGTERM: {string.Join(", ", stopCodes.Select(s => $"{s.Key} exit {s.Value}"))}; spool files left {spoolLeft}");
        foreach (var sample in answered.Where(o => o.Status != 200).GroupBy(o => (o.Client, Second: (int)o.CompletedAt.TotalSeconds / 5)).Select(g => g.First()).Take(20))
        {
            Say($"fault test: client {sample.Client} got {sample.Status} from {sample.Process.Name} at {sample.CompletedAt.TotalSeconds:0.0} s: {sample.Failure}");
        }
        foreach (var process in exits.Keys)
        {
            Say($"fault test: last output of {process.Name}:\n{Tail(process.Output, 40)}");
        }
        foreach (var odd in unexpectedStatus.Take(5))
        {
            Say($"fault test: unexpected answer {odd.Status} from {odd.Process.Name} at {odd.CompletedAt.TotalSeconds:0.0} s: {Tail(odd.Failure ?? "", 3)}");
        }

        // Every broken promise is listed, not only the first.
        var broken = new List<string>();
        void Expect(bool held, string promise)
        {
            if (!held)
            {
                broken.Add(promise);
            }
        }
        Expect(interrupted is null, $"the scenario runs to its end: {interrupted}");
        Expect(exits.IsEmpty, $"no instance exits by itself: {string.Join(", ", exits.Keys.Select(p => p.Name))} did");
        Expect(duplicated.Count == 0, $"no usage row is duplicated: {duplicated.Count} are, e.g. {string.Join(", ", duplicated.Take(3).Select(d => d.Key))}");
        Expect(unknownRows == 0, $"every usage row belongs to a request sent: {unknownRows} do not");
        Expect(missing.Count == 0, $"every request answered by an instance not killed has its row: {missing.Count} have none, e.g. " +
            string.Join(", ", missing.Take(3).Select(m => $"{m.Tag} from {m.Process.Name} at {m.CompletedAt.TotalSeconds:0.0} s")));
        Expect(refusedWithRow.Count == 0, $"a request the gateway refused itself has no row: {refusedWithRow.Count} have one");
        Expect(lost.Count <= inLastWindow && lostOutsideWindow.Count == 0,
            $"the SIGKILL loses at most what one flush interval holds: {lost.Count} rows lost, {lostOutsideWindow.Count} of them answered more than {LossWindow.TotalMilliseconds} ms before it");
        Expect(unexpectedStatus.Count == 0, $"uncapped devices always get 200, capped ones 200, 429 or 503: {unexpectedStatus.Count} other answers");
        foreach (var (device, spent, _) in capped)
        {
            var client = Array.IndexOf(devices, device);
            Expect(spent <= CapBound(client), $"{device} stays within its cap plus one in-flight worst case per instance: it spent {spent} USD, bound {CapBound(client)} USD");
            Expect(answered.Any(o => o.Client == client && o.Status == 429), $"{device} reached its cap during the run");
        }
        Expect(stopCodes.Values.All(c => c == 0), $"instances stopped with SIGTERM exit with 0: {string.Join(", ", stopCodes.Select(c => $"{c.Key} {c.Value}"))}");
        Expect(spoolLeft == 0, $"the spool is empty once every instance has stopped: {spoolLeft} files left");
        Expect(forwarded.Count >= 1000, $"the load is heavy enough to show anything: only {forwarded.Count} requests were forwarded");
        Assert.True(broken.Count == 0, "broken promises:\n" + string.Join("\n", broken));

        decimal CapBound(int client) => Caps[client] + Instances * worstCase;
    }

    /// <summary>A forwarded request (the simulator's request-id), or one the gateway tried to forward and failed (502, 504), has a usage row.</summary>
    private static bool ExpectsRow(Outcome o) => o.Status is not null && o.Complete && (o.Forwarded || o.Status is 502 or 504);

    private async Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"waited {timeout.TotalSeconds} s for {what}");
            }
            if (_slots.All(s => s is null || s.ExitedByItself))
            {
                throw new InvalidOperationException($"every instance has exited while waiting for {what}");
            }
            await Task.Delay(50);
        }
    }

    private async Task<Dictionary<string, long>> RowsAsync()
    {
        await using var connection = new NpgsqlConnection(_postgres.ConnectionString(_db));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT correlation_id, count(*) FROM usage_events GROUP BY correlation_id", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new Dictionary<string, long>(StringComparer.Ordinal);
        while (await reader.ReadAsync())
        {
            rows[reader.GetString(0)] = reader.GetInt64(1);
        }
        return rows;
    }

    private async Task<List<(string Device, decimal Spent, long Count)>> CappedSpendAsync(string[] devices)
    {
        await using var connection = new NpgsqlConnection(_postgres.ConnectionString(_db));
        await connection.OpenAsync();
        var result = new List<(string, decimal, long)>();
        foreach (var device in devices)
        {
            await using var command = new NpgsqlCommand("SELECT coalesce(sum(cost_usd), 0), count(*) FROM usage_events WHERE device_id = @d", connection);
            command.Parameters.AddWithValue("d", device);
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            result.Add((device, reader.GetDecimal(0), reader.GetInt64(1)));
        }
        return result;
    }

    private static string Tail(string text, int lines) => string.Join('\n', text.Split('\n').TakeLast(lines));
}
