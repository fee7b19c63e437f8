using System.Diagnostics;
using System.Globalization;
using System.Text;
using ClaudeProxy.Gateway.Limits;
using StackExchange.Redis;

namespace ClaudeProxy.Benchmarks;

/// <summary>
/// What one Redis core sustains of the gateway's own admission and settlement scripts (the text the gateway sends,
/// taken from its assembly), over many devices whose keys are hash-tagged as the gateway's are, with the arguments the
/// gateway passes. Each phase is timed on Redis's side: its process's CPU time over the phase, and
/// <c>INFO commandstats</c> reset before it. Prints one markdown table row per phase.
/// </summary>
public static class CapacityRedis
{
    private const string Period = "2026-11";
    private const long Reserve = 50_000;            // the worst case of a small request, in micro-USD
    private const long CapMicros = 1_000_000_000_000;
    private const long SpendTtlMs = 31L * 86_400_000 + 86_400_000;

    /// <summary>The settlement script, from the gateway's assembly.</summary>
    public static string SettleScriptText => RedisAdmissionStore.SettleScriptText;

    public static async Task<int> RunAsync(string endpoint, int devices, int seconds, int concurrency)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{endpoint},abortConnect=false,allowAdmin=true");
        var server = redis.GetServers()[0];
        var db = redis.GetDatabase();
        var pid = int.Parse(ParseInfo(await server.InfoRawAsync("server"))["process_id"], CultureInfo.InvariantCulture);
        var admitSha = await server.ScriptLoadAsync(RedisAdmissionStore.AdmitScriptText);
        var settleSha = await server.ScriptLoadAsync(SettleScriptText);
        var ids = Enumerable.Range(0, devices).Select(i => $"dev-{i:D6}-{Guid.NewGuid():N}"[..24]).ToArray();
        var groups = Enumerable.Range(0, 20).Select(i => $"grp_{i:D4}").ToArray();

        // Device only (rate limit, token budget, standing, its own spend cap) and a person under three caps (their own,
        // their group's pool, the organisation's).
        var device = new Workload(admitSha, settleSha, ids, id => [RedisAdmissionStore.SpendKey(id, Period)]);
        var person = new Workload(admitSha, settleSha, ids, id =>
            [RedisAdmissionStore.SpendKey(id, Period), RedisAdmissionStore.PoolKey(groups[(id.GetHashCode() & int.MaxValue) % groups.Length], Period),
             RedisAdmissionStore.OrganizationKey(Period)]);

        // Unmeasured: every device's standing and counters seeded, and a few seconds of admissions and settlements so the
        // sliding windows and per-second token buckets hold what a busy minute leaves.
        foreach (var load in new[] { device, person })
        {
            await RunFor(TimeSpan.FromSeconds(Math.Max(2, seconds / 3)), concurrency, async i =>
            {
                var id = load.Ids[i % load.Ids.Length];
                await load.AdmitAsync(db, id);
                await load.SettleAsync(db, id);
            });
        }

        Console.WriteLine("| script | caps | calls | wall s | calls/s | Redis CPU s | Redis CPU share | calls per Redis CPU-second | usec_per_call (commandstats) | outcomes |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var (name, load) in new[] { ("device", device), ("person", person) })
        {
            await Measure(server, pid, $"admission | {name}: {load.Caps} cap{(load.Caps == 1 ? "" : "s")}", seconds, concurrency,
                i => load.AdmitAsync(db, load.Ids[i % load.Ids.Length]), load.Outcomes);
            await Measure(server, pid, $"settlement | {name}: {load.Caps} cap{(load.Caps == 1 ? "" : "s")}", seconds, concurrency,
                i => load.SettleAsync(db, load.Ids[i % load.Ids.Length]), null);
            // A busy device: its last request's settlement rides on the admission of its next.
            await Measure(server, pid, $"admission carrying a settlement | {name}: {load.Caps} cap{(load.Caps == 1 ? "" : "s")}", seconds, concurrency,
                i => load.AdmitAsync(db, load.Ids[i % load.Ids.Length], carry: true), load.Outcomes);
        }
        return 0;
    }

    private static async Task Measure(IServer server, int pid, string label, int seconds, int concurrency, Func<int, Task> call,
        Dictionary<int, long>? outcomes)
    {
        await server.ExecuteAsync("CONFIG", "RESETSTAT");
        outcomes?.Clear();
        using var process = Process.GetProcessById(pid);
        var cpu = process.TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var calls = await RunFor(TimeSpan.FromSeconds(seconds), concurrency, call);
        var wall = clock.Elapsed.TotalSeconds;
        process.Refresh();
        var used = (process.TotalProcessorTime - cpu).TotalSeconds;
        var stats = ParseInfo(await server.InfoRawAsync("commandstats"));
        var usec = stats.TryGetValue("cmdstat_evalsha", out var line) ? Field(line, "usec_per_call") : "?";
        var seen = outcomes is null ? "—" : string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{(AdmissionOutcome)o.Key} {o.Value}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {label} | {calls} | {wall:F1} | {calls / wall:F0} | {used:F2} | {100 * used / wall:F0} % | {calls / used:F0} | {usec} | {seen} |"));
    }

    /// <summary>Keeps <paramref name="concurrency"/> calls in flight (pipelined on one connection, as the gateway's are) for a time.</summary>
    private static async Task<long> RunFor(TimeSpan duration, int concurrency, Func<int, Task> call)
    {
        long calls = 0;
        var next = -1;
        var end = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var workers = Enumerable.Range(0, concurrency).Select(async _ =>
        {
            await Task.Yield();
            while (Stopwatch.GetTimestamp() < end)
            {
                await call(Interlocked.Increment(ref next) & int.MaxValue);
                Interlocked.Increment(ref calls);
            }
        });
        await Task.WhenAll(workers);
        return calls;
    }

    private static Dictionary<string, string> ParseInfo(string? info)
    {
        var result = new Dictionary<string, string>();
        foreach (var raw in (info ?? "").Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && !line.StartsWith('#'))
            {
                result[line[..colon]] = line[(colon + 1)..];
            }
        }
        return result;
    }

    private static string Field(string line, string name) =>
        line.Split(',').Select(f => f.Split('=')).FirstOrDefault(kv => kv[0] == name)?[1] ?? "?";

    /// <summary>The gateway's keys and arguments for one kind of caller; remembers each counter's generation for the settlement.</summary>
    private sealed class Workload(byte[] admitSha, byte[] settleSha, string[] ids, Func<string, RedisKey[]> counters)
    {
        private readonly Dictionary<string, long[]> _generations = [];
        public string[] Ids { get; } = ids;
        public int Caps { get; } = counters("x").Length;
        public Dictionary<int, long> Outcomes { get; } = [];

        public async Task AdmitAsync(IDatabase db, string id, bool carry = false)
        {
            var caps = counters(id);
            var carried = carry ? caps.Length : 0;
            var keys = new RedisKey[3 + caps.Length + carried];
            keys[0] = RedisAdmissionStore.RateKey(id);
            keys[1] = RedisAdmissionStore.TokenKey(id);
            keys[2] = RedisAdmissionStore.StandingKey(id);
            caps.CopyTo(keys, 3);
            // As RedisAdmissionStore.AdmitAsync builds them: limit, window, member, token limit, reserve, policy version,
            // standing seed, its version, refuse unknown, caps, then per cap: cap, ttl, spend seed; then the settlement
            // carried: tokens, counters, and per counter its generation and delta.
            var args = new RedisValue[12 + 3 * caps.Length + 2 * carried];
            args[0] = 1_000_000;
            args[1] = 60_000;
            args[2] = Guid.NewGuid().ToString("N");
            args[3] = 2_000_000;
            args[4] = Reserve;
            args[5] = 0;
            args[6] = DeviceStanding.Active;
            args[7] = 0;
            args[8] = 0;
            args[9] = caps.Length;
            for (var i = 0; i < caps.Length; i++)
            {
                args[10 + 3 * i] = CapMicros;
                args[11 + 3 * i] = SpendTtlMs;
                args[12 + 3 * i] = 0;
            }
            var at = 10 + 3 * caps.Length;
            args[at] = carry ? 900 : 0;
            args[at + 1] = carried;
            if (carry)
            {
                long[]? generations;
                lock (_generations)
                {
                    _generations.TryGetValue(id, out generations);
                }
                caps.CopyTo(keys, 3 + caps.Length);
                for (var i = 0; i < carried; i++)
                {
                    args[at + 2 + 2 * i] = generations?[i] ?? 0;
                    args[at + 3 + 2 * i] = 4_000 - Reserve;
                }
            }
            var result = (RedisResult[])(await db.ScriptEvaluateAsync(admitSha, keys, args))!;
            var outcome = (int)result[0];
            lock (_generations)
            {
                Outcomes[outcome] = Outcomes.GetValueOrDefault(outcome) + 1;
                if (result.Length > 7)
                {
                    _generations[id] = Enumerable.Range(0, caps.Length).Select(i => (long)result[8 + 2 * i]).ToArray();
                }
            }
        }

        public async Task SettleAsync(IDatabase db, string id)
        {
            var caps = counters(id);
            long[]? generations;
            lock (_generations)
            {
                _generations.TryGetValue(id, out generations);
            }
            var keys = new RedisKey[1 + caps.Length];
            keys[0] = RedisAdmissionStore.TokenKey(id);
            caps.CopyTo(keys, 1);
            // A small answer: its tokens, and per counter its generation and what it cost minus the reservation.
            var args = new RedisValue[1 + 2 * caps.Length];
            args[0] = 900;
            for (var i = 0; i < caps.Length; i++)
            {
                args[1 + 2 * i] = generations?[i] ?? 0;
                args[2 + 2 * i] = 4_000 - Reserve;
            }
            await db.ScriptEvaluateAsync(settleSha, keys, args);
        }
    }

    /// <summary>The scripts as the gateway sends them, for anyone who wants to run them with other tools.</summary>
    public static string Describe() => new StringBuilder()
        .AppendLine("-- admission").AppendLine(RedisAdmissionStore.AdmitScriptText)
        .AppendLine("-- settlement").AppendLine(SettleScriptText).ToString();
}
