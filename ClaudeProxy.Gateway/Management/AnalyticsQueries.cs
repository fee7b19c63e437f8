using System.Text;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Usage;
using Npgsql;
using NpgsqlTypes;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// The analytics queries, one round trip each (labels apart), all on the rollups. Cache savings are priced in
/// Postgres: each model recorded is matched once against the price book's globs (as LIKE patterns, first family
/// wins, a model without a family at the book's highest prices, as its cost was), then the sums are taken per key.
/// </summary>
public sealed class AnalyticsQueries(NpgsqlDataSource dataSource, PriceBook prices,
    [Microsoft.Extensions.DependencyInjection.FromKeyedServices(AnalyticsQueries.TimeProviderKey)] TimeProvider time)
{
    /// <summary>The key of the clock the analytics read "now" from (tests fix it to check the month-end projection).</summary>
    public const string TimeProviderKey = "analytics";

    public TimeProvider Time => time;

    /// <summary>Subagents nested deeper than this are shown as children of their ancestor at this depth (JSON has a depth limit).</summary>
    public const int MaxTreeDepth = 16;

    private const string Counters = "sum(requests) AS requests, sum(input_tokens) AS input, sum(cache_write_5m_tokens) AS w5, " +
        "sum(cache_write_1h_tokens) AS w1, sum(cache_read_tokens) AS rd, sum(cost_usd) AS cost";

    private const string RowCounters = "requests, input_tokens AS input, cache_write_5m_tokens AS w5, cache_write_1h_tokens AS w1, cache_read_tokens AS rd, cost_usd AS cost";

    // The prices per million tokens of every model ever recorded (model_rollups holds them all, and is small); the LIKE
    // patterns come from the price book's globs. Rows of a model not listed get the highest prices, as their cost did.
    private const string PriceTable =
        "fam AS (SELECT * FROM unnest(@pat::text[], @ord::int[], @pin::numeric[], @pw5::numeric[], @pw1::numeric[], @prd::numeric[]) AS f(pat, ord, pin, pw5, pw1, prd)), " +
        "mp AS (SELECT m.model, f.pin, f.pw5, f.pw1, f.prd " +
        "FROM (SELECT DISTINCT model FROM model_rollups) AS m LEFT JOIN LATERAL (SELECT * FROM fam WHERE m.model LIKE fam.pat ORDER BY fam.ord LIMIT 1) AS f ON true)";

    private const string Saved = "sum(rd * (coalesce(mp.pin, @hin) - coalesce(mp.prd, @hrd))) / 1000000";
    private const string WriteExtra = "sum(w5 * (coalesce(mp.pw5, @hw5) - coalesce(mp.pin, @hin)) + w1 * (coalesce(mp.pw1, @hw1) - coalesce(mp.pin, @hin))) / 1000000";

    public async Task<CacheAnalytics> CacheAsync(string by, DateTimeOffset from, DateTimeOffset to, string? session, int limit, CancellationToken ct)
    {
        var days = "bucket_start >= @from AND bucket_start < @to";
        var sessionRange = "last_seen >= @from AND first_seen < @to" + (session is null ? "" : " AND session_id = @session");
        var source = by switch
        {
            "model" => $"SELECT model AS key, NULL::text AS grp, NULL::text AS label, model, {Counters} FROM model_rollups WHERE {days} GROUP BY model",
            "device" => $"SELECT device_id AS key, NULL::text AS grp, NULL::text AS label, model, {Counters} FROM usage_rollups WHERE granularity = 'd' AND {days} GROUP BY device_id, model",
            "user" => $"SELECT user_id AS key, NULL::text AS grp, NULL::text AS label, model, {Counters} FROM user_rollups WHERE {days} GROUP BY user_id, model",
            "group" => $"SELECT group_id AS key, NULL::text AS grp, NULL::text AS label, model, {Counters} FROM group_rollups WHERE {days} GROUP BY group_id, model",
            // Sessions' rows are summed once, in k (grouping them by model first would hardly shrink them).
            "session" => $"SELECT session_id AS key, NULL::text AS grp, coalesce(user_email, device_id) AS label, model, {RowCounters} FROM session_rollups WHERE {sessionRange}",
            // Without a session, the same agent id in two sessions is two rows: the session is the label.
            _ => $"SELECT agent_id AS key, session_id AS grp, session_id AS label, model, {RowCounters} FROM session_rollups WHERE {sessionRange}",
        };
        var sql = $"WITH src AS ({source}), {PriceTable}, " +
            $"k AS (SELECT key, grp, max(label) AS label, sum(requests) AS requests, sum(input) AS input, sum(w5) AS w5, sum(w1) AS w1, sum(rd) AS rd, " +
            $"sum(cost) AS cost, {Saved} AS saved, {WriteExtra} AS extra FROM src LEFT JOIN mp USING (model) GROUP BY key, grp) " +
            "(SELECT false AS total, key, label, requests, input, w5, w1, rd, cost, saved, extra FROM k ORDER BY saved - extra DESC, key, grp LIMIT @limit) " +
            "UNION ALL SELECT true, NULL, NULL, sum(requests), sum(input), sum(w5), sum(w1), sum(rd), sum(cost), sum(saved), sum(extra) FROM k";
        await using var read = await ReadAsync(sql, ct);
        var command = read.Command;
        AddPrices(command);
        command.Parameters.AddWithValue("from", from);
        command.Parameters.AddWithValue("to", to);
        command.Parameters.AddWithValue("limit", limit);
        if (session is not null)
        {
            command.Parameters.AddWithValue("session", session);
        }
        var rows = new List<CacheSavingsRow>();
        CacheSavingsRow? total = null;
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var row = new CacheSavingsRow(reader.IsDBNull(1) ? "" : reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2),
                    Long(reader, 3), Long(reader, 4), Long(reader, 5), Long(reader, 6), Long(reader, 7), Money(reader, 8), Money(reader, 9), Money(reader, 10),
                    Money(reader, 9) - Money(reader, 10), HitRatio(Long(reader, 4), Long(reader, 5), Long(reader, 6), Long(reader, 7)));
                if (reader.GetBoolean(0))
                {
                    total = row with { Key = "total" };
                }
                else
                {
                    rows.Add(row);
                }
            }
        }
        if (by is "user" or "group" or "device")
        {
            var labels = await LabelsAsync(by, [.. rows.Select(r => r.Key)], ct);
            rows = rows.ConvertAll(r => r with { Label = labels.GetValueOrDefault(r.Key) });
        }
        return new CacheAnalytics(from, to, by, total!, rows);
    }

    private static double HitRatio(long input, long w5, long w1, long read) =>
        input + w5 + w1 + read is > 0 and var all ? (double)read / all : 0;

    public async Task<SpendAnalytics> SpendAsync(string by, string period, DateTimeOffset from, DateTimeOffset to, int limit, CancellationToken ct)
    {
        var (table, key, filter) = by switch
        {
            "model" => ("model_rollups", "model", ""),
            "device" => ("usage_rollups", "device_id", "granularity = 'd' AND "),
            "user" => ("user_rollups", "user_id", ""),
            _ => ("group_rollups", "group_id", ""),
        };
        // Weeks start on Monday (ISO); a bucket at either end of the range holds only the days inside it.
        var sql = $"WITH src AS (SELECT date_trunc('{period}', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, {key} AS key, " +
            $"sum(requests) AS requests, sum(cost_usd) AS cost FROM {table} WHERE {filter}bucket_start >= @from AND bucket_start < @to GROUP BY 1, 2), " +
            "totals AS (SELECT key, sum(requests) AS requests, sum(cost) AS cost FROM src GROUP BY key), " +
            "top AS (SELECT key FROM totals ORDER BY cost DESC, key LIMIT @limit) " +
            "SELECT NULL::timestamptz AS bucket, key, requests, cost FROM totals " +
            "UNION ALL SELECT bucket, key, requests, cost FROM src WHERE key IN (SELECT key FROM top)";
        var points = new List<SpendPoint>();
        var totals = new List<SpendKeyTotal>();
        await using (var read = await ReadAsync(sql, ct))
        {
            var command = read.Command;
            command.Parameters.AddWithValue("from", from);
            command.Parameters.AddWithValue("to", to);
            command.Parameters.AddWithValue("limit", limit);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                if (reader.IsDBNull(0))
                {
                    totals.Add(new SpendKeyTotal(reader.GetString(1), null, Long(reader, 2), Money(reader, 3)));
                }
                else
                {
                    points.Add(new SpendPoint(reader.GetFieldValue<DateTimeOffset>(0), reader.GetString(1), Long(reader, 2), Money(reader, 3)));
                }
            }
        }
        if (by is "user" or "group" or "device")
        {
            var labels = await LabelsAsync(by, [.. totals.Select(t => t.Key)], ct);
            totals = totals.ConvertAll(t => t with { Label = labels.GetValueOrDefault(t.Key) });
        }
        totals.Sort((a, b) => b.CostUsd != a.CostUsd ? b.CostUsd.CompareTo(a.CostUsd) : string.CompareOrdinal(a.Key, b.Key));
        points.Sort((a, b) => a.Bucket != b.Bucket ? a.Bucket.CompareTo(b.Bucket) : string.CompareOrdinal(a.Key, b.Key));
        return new SpendAnalytics(from, to, by, period, points, totals, await ProjectionAsync(ct));
    }

    /// <summary>
    /// This month so far (every request up to now, the current hour included) over the time elapsed since the month
    /// began, counted in fractional days (at least an hour, so the first minutes of a month do not project wildly), times
    /// the days of the month.
    /// </summary>
    private async Task<SpendProjection> ProjectionAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var monthStart = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero);
        var monthEnd = monthStart.AddMonths(1);
        await using var read = await ReadAsync("SELECT coalesce(sum(cost_usd), 0) FROM model_rollups WHERE bucket_start >= @from AND bucket_start < @to", ct);
        var command = read.Command;
        command.Parameters.AddWithValue("from", monthStart);
        command.Parameters.AddWithValue("to", monthEnd);
        var spent = (decimal)(await command.ExecuteScalarAsync(ct))!;
        var elapsedDays = (decimal)Math.Max((now - monthStart).TotalDays, 1.0 / 24);
        var rate = spent / elapsedDays;
        var projected = rate * (decimal)(monthEnd - monthStart).TotalDays;
        return new SpendProjection(monthStart, monthEnd, spent, Math.Round(rate, 6), Math.Round(projected, 6));
    }

    /// <summary>
    /// The costliest sessions active (any request answered) in the last <paramref name="days"/> days, with the figures of
    /// their whole life. The candidates are ranked by the cost of their rows active in those days (read from the
    /// covering index on <c>last_seen</c>); three times <paramref name="limit"/> of them are then summed whole and ranked again.
    /// </summary>
    public async Task<List<SessionSummary>> TopSessionsAsync(int days, int limit, CancellationToken ct)
    {
        var since = time.GetUtcNow().AddDays(-days);
        var sql = "WITH ranked AS (SELECT session_id FROM session_rollups WHERE last_seen >= @since GROUP BY session_id ORDER BY sum(cost_usd) DESC, session_id LIMIT @candidates), " +
            "src AS (SELECT r.*, r.cache_write_5m_tokens AS w5, r.cache_write_1h_tokens AS w1, r.cache_read_tokens AS rd FROM session_rollups r " +
            "WHERE r.session_id IN (SELECT session_id FROM ranked)), " +
            $"{PriceTable} " +
            "SELECT session_id, min(device_id) FILTER (WHERE agent_id = ''), min(device_id), max(user_email), min(first_seen), max(last_seen), sum(requests), " +
            $"count(DISTINCT agent_id) FILTER (WHERE agent_id <> ''), sum(cost_usd), {Saved} " +
            "FROM src LEFT JOIN mp USING (model) GROUP BY session_id ORDER BY sum(cost_usd) DESC, session_id LIMIT @limit";
        await using var read = await ReadAsync(sql, ct);
        var command = read.Command;
        AddPrices(command);
        command.Parameters.AddWithValue("since", since);
        command.Parameters.AddWithValue("limit", limit);
        command.Parameters.AddWithValue("candidates", limit * 3);
        var sessions = new List<SessionSummary>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var first = reader.GetFieldValue<DateTimeOffset>(4);
            var last = reader.GetFieldValue<DateTimeOffset>(5);
            sessions.Add(new SessionSummary(reader.GetString(0), reader.IsDBNull(1) ? reader.GetString(2) : reader.GetString(1),
                reader.IsDBNull(3) ? null : reader.GetString(3), first, last, (last - first).TotalSeconds, Long(reader, 6), (int)reader.GetInt64(7),
                Money(reader, 8), Money(reader, 9)));
        }
        return sessions;
    }

    public async Task<SessionTree?> SessionAsync(string sessionId, CancellationToken ct)
    {
        var sql = "WITH src AS (SELECT *, cache_write_5m_tokens AS w5, cache_write_1h_tokens AS w1, cache_read_tokens AS rd FROM session_rollups WHERE session_id = @session), " +
            $"{PriceTable} " +
            "SELECT agent_id, device_id, user_email, parent_agent_id, first_seen, last_seen, requests, input_tokens, output_tokens, w5, w1, rd, cost_usd, " +
            "rd * (coalesce(mp.pin, @hin) - coalesce(mp.prd, @hrd)) / 1000000 FROM src LEFT JOIN mp USING (model) ORDER BY agent_id, first_seen";
        await using var read = await ReadAsync(sql, ct);
        var command = read.Command;
        AddPrices(command);
        command.Parameters.AddWithValue("session", sessionId);
        var agents = new Dictionary<string, AgentNode>(StringComparer.Ordinal);
        string? mainDevice = null, anyDevice = null, email = null;
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var agent = reader.GetString(0);
                var device = reader.GetString(1);
                anyDevice ??= device;
                if (agent.Length == 0)
                {
                    mainDevice ??= device;
                }
                email ??= reader.IsDBNull(2) ? null : reader.GetString(2);
                var row = new AgentNode(agent.Length == 0 ? null : agent, reader.IsDBNull(3) ? null : reader.GetString(3),
                    reader.GetFieldValue<DateTimeOffset>(4), reader.GetFieldValue<DateTimeOffset>(5), reader.GetInt64(6), reader.GetInt64(7),
                    reader.GetInt64(8), reader.GetInt64(9), reader.GetInt64(10), reader.GetInt64(11), reader.GetDecimal(12), reader.GetDecimal(13), []);
                agents[agent] = agents.TryGetValue(agent, out var seen) ? Add(seen, row) : row;
            }
        }
        if (agents.Count == 0)
        {
            return null;
        }
        var root = Tree(agents);
        var all = agents.Values.ToList();
        var first = all.Min(a => a.FirstSeen);
        var last = all.Max(a => a.LastSeen);
        var summary = new SessionSummary(sessionId, mainDevice ?? anyDevice!, email, first, last, (last - first).TotalSeconds, all.Sum(a => a.Requests),
            all.Count(a => a.AgentId is not null), all.Sum(a => a.CostUsd), all.Sum(a => a.SavedUsd));
        return new SessionTree(summary, root);
    }

    /// <summary>One agent's rows of two models, summed.</summary>
    private static AgentNode Add(AgentNode a, AgentNode b) => a with
    {
        ParentAgentId = a.ParentAgentId ?? b.ParentAgentId,
        FirstSeen = a.FirstSeen < b.FirstSeen ? a.FirstSeen : b.FirstSeen,
        LastSeen = a.LastSeen > b.LastSeen ? a.LastSeen : b.LastSeen,
        Requests = a.Requests + b.Requests,
        InputTokens = a.InputTokens + b.InputTokens,
        OutputTokens = a.OutputTokens + b.OutputTokens,
        CacheWrite5mTokens = a.CacheWrite5mTokens + b.CacheWrite5mTokens,
        CacheWrite1hTokens = a.CacheWrite1hTokens + b.CacheWrite1hTokens,
        CacheReadTokens = a.CacheReadTokens + b.CacheReadTokens,
        CostUsd = a.CostUsd + b.CostUsd,
        SavedUsd = a.SavedUsd + b.SavedUsd,
    };

    /// <summary>
    /// The main conversation at the root (empty when only subagents were recorded), each subagent under the agent that
    /// started it. A subagent whose parent is not a recorded subagent of the session, or that sits in a cycle, hangs from the
    /// root; below <see cref="MaxTreeDepth"/> the descendants are listed flat under their ancestor at that depth.
    /// </summary>
    private static AgentNode Tree(Dictionary<string, AgentNode> agents)
    {
        var subagents = agents.Values.Where(a => a.AgentId is not null).OrderBy(a => a.FirstSeen).ThenBy(a => a.AgentId, StringComparer.Ordinal).ToList();
        bool HasParent(AgentNode a) => a.ParentAgentId is { Length: > 0 } p && p != a.AgentId && agents.ContainsKey(p);
        var children = subagents.Where(HasParent).ToLookup(a => a.ParentAgentId!, StringComparer.Ordinal);
        var placed = new HashSet<string>(StringComparer.Ordinal);

        void Flatten(AgentNode node, List<AgentNode> into)
        {
            foreach (var child in children[node.AgentId!])
            {
                if (placed.Add(child.AgentId!))
                {
                    into.Add(child with { Children = [] });
                    Flatten(child, into);
                }
            }
        }

        AgentNode Build(AgentNode node, int depth)
        {
            var kids = new List<AgentNode>();
            if (depth >= MaxTreeDepth - 1)
            {
                Flatten(node, kids);
                return node with { Children = kids };
            }
            foreach (var child in children[node.AgentId!])
            {
                if (placed.Add(child.AgentId!))
                {
                    kids.Add(Build(child, depth + 1));
                }
            }
            return node with { Children = kids };
        }

        var top = new List<AgentNode>();
        // First the subagents without a known parent, then whatever a cycle kept out of reach.
        foreach (var agent in subagents.Where(a => !HasParent(a)).Concat(subagents))
        {
            if (placed.Add(agent.AgentId!))
            {
                top.Add(Build(agent, 1));
            }
        }
        var first = agents.Values.Min(a => a.FirstSeen);
        var root = agents.GetValueOrDefault("") ?? new AgentNode(null, null, first, first, 0, 0, 0, 0, 0, 0, 0m, 0m, []);
        return root with { Children = top };
    }

    public async Task<ErrorAnalytics> ErrorsAsync(DateTimeOffset from, DateTimeOffset to, CancellationToken ct)
    {
        var unit = to - from <= TimeSpan.FromDays(2) ? "hour" : "day";
        var sql = $"SELECT date_trunc('{unit}', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, status, stream_error, NULL::text AS reason, sum(requests) " +
            "FROM model_rollups WHERE bucket_start >= @from AND bucket_start < @to GROUP BY 1, 2, 3 " +
            $"UNION ALL SELECT date_trunc('{unit}', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 0, false, reason, sum(requests) " +
            "FROM refusal_rollups WHERE bucket_start >= @from AND bucket_start < @to GROUP BY 1, 4";
        await using var read = await ReadAsync(sql, ct);
        var command = read.Command;
        command.Parameters.AddWithValue("from", from);
        command.Parameters.AddWithValue("to", to);
        long all = 0;
        var series = new Dictionary<(DateTimeOffset, string), long>();
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var count = Long(reader, 4);
                all += count;
                var reason = reader.IsDBNull(3) ? UpstreamReason(reader.GetInt32(1), reader.GetBoolean(2)) : "gateway_" + reader.GetString(3);
                if (reason is not null)
                {
                    var key = (reader.GetFieldValue<DateTimeOffset>(0), reason);
                    series[key] = series.GetValueOrDefault(key) + count;
                }
            }
        }
        var reasons = series.GroupBy(s => s.Key.Item2).Select(g => g.Sum(s => s.Value) is var n ? new ErrorRateRow(g.Key, n, all == 0 ? 0 : (double)n / all) : null!)
            .OrderByDescending(r => r.Count).ThenBy(r => r.Reason, StringComparer.Ordinal).ToList();
        var points = series.Select(s => new ErrorRatePoint(s.Key.Item1, s.Key.Item2, s.Value))
            .OrderBy(p => p.Bucket).ThenBy(p => p.Reason, StringComparer.Ordinal).ToList();
        return new ErrorAnalytics(from, to, all, reasons, points);
    }

    /// <summary>An admitted request's error reason (the status and its Anthropic error type), or null when it succeeded.</summary>
    public static string? UpstreamReason(int status, bool streamError) =>
        status >= 400 ? $"upstream_{status}_{ApiErrors.TypeFor(status)}" : streamError ? "upstream_stream_error" : null;

    public async Task<LatencyAnalytics> LatencyAsync(DateTimeOffset from, DateTimeOffset to, CancellationToken ct)
    {
        await using var read = await ReadAsync(
            "SELECT model, bucket, sum(requests) FROM ttft_rollups WHERE bucket_start >= @from AND bucket_start < @to GROUP BY model, bucket ORDER BY model, bucket", ct);
        var command = read.Command;
        command.Parameters.AddWithValue("from", from);
        command.Parameters.AddWithValue("to", to);
        var histograms = new Dictionary<string, List<(int Bucket, long Count)>>(StringComparer.Ordinal);
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var model = reader.GetString(0);
                if (!histograms.TryGetValue(model, out var list))
                {
                    histograms[model] = list = [];
                }
                list.Add((reader.GetInt16(1), Long(reader, 2)));
            }
        }
        var rows = histograms.Select(h => new LatencyRow(h.Key, h.Value.Sum(b => b.Count), Percentile(h.Value, 0.50), Percentile(h.Value, 0.95)))
            .OrderByDescending(r => r.Requests).ThenBy(r => r.Model, StringComparer.Ordinal).ToList();
        return new LatencyAnalytics(from, to, rows);
    }

    /// <summary>
    /// The <paramref name="q"/> quantile of a histogram of log-spaced buckets (sorted by bucket): the bucket holding the
    /// rank q·N, and within it the point as far (geometrically) between its bounds as the rank is between the counts
    /// before and after it. The answer lies in the same bucket as the true nearest-rank value, so it is off by less than
    /// the bucket's width: 2^(1/8) − 1, about 9.05 % of the value (values under 1 ms count as 1 ms).
    /// </summary>
    public static double? Percentile(IReadOnlyList<(int Bucket, long Count)> histogram, double q)
    {
        var total = histogram.Sum(b => b.Count);
        if (total == 0)
        {
            return null;
        }
        var rank = Math.Max(q * total, double.Epsilon);
        long before = 0;
        foreach (var (bucket, count) in histogram)
        {
            if (count > 0 && before + count >= rank)
            {
                var fraction = (rank - before) / count;
                return Math.Round(Math.Pow(2, (bucket + fraction) / UsageSql.TtftBucketsPerDoubling), 3);
            }
            before += count;
        }
        return Math.Round(Math.Pow(2, (histogram[^1].Bucket + 1.0) / UsageSql.TtftBucketsPerDoubling), 3);
    }

    /// <summary>What people call each key: a user's or a device owner's email, a group's name.</summary>
    private async Task<Dictionary<string, string>> LabelsAsync(string by, string[] keys, CancellationToken ct)
    {
        var sql = by switch
        {
            "user" => "SELECT user_id, email FROM users WHERE user_id = ANY(@keys) AND email IS NOT NULL",
            "group" => "SELECT group_id, name FROM groups WHERE group_id = ANY(@keys)",
            _ => "SELECT d.device_id, u.email FROM devices d JOIN users u ON u.user_id = coalesce(d.owner_user_id, CASE WHEN d.device_id LIKE '@%' THEN substr(d.device_id, 2) END) " +
                "WHERE d.device_id = ANY(@keys) AND u.email IS NOT NULL",
        };
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (keys.Length == 0)
        {
            return labels;
        }
        await using var read = await ReadAsync(sql, ct);
        var command = read.Command;
        command.Parameters.AddWithValue("keys", keys);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            labels[reader.GetString(0)] = reader.GetString(1);
        }
        return labels;
    }

    private void AddPrices(NpgsqlCommand command)
    {
        var patterns = new List<string>();
        var order = new List<int>();
        var input = new List<decimal>();
        var write5m = new List<decimal>();
        var write1h = new List<decimal>();
        var read = new List<decimal>();
        var i = 0;
        foreach (var family in prices.Families)
        {
            foreach (var glob in family.Models)
            {
                patterns.Add(LikePattern(glob));
                order.Add(i++);
                input.Add(family.Input);
                write5m.Add(family.CacheWrite5m);
                write1h.Add(family.CacheWrite1h);
                read.Add(family.CacheRead);
            }
        }
        command.Parameters.Add(new NpgsqlParameter("pat", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = patterns.ToArray() });
        command.Parameters.Add(new NpgsqlParameter("ord", NpgsqlDbType.Array | NpgsqlDbType.Integer) { Value = order.ToArray() });
        command.Parameters.Add(new NpgsqlParameter("pin", NpgsqlDbType.Array | NpgsqlDbType.Numeric) { Value = input.ToArray() });
        command.Parameters.Add(new NpgsqlParameter("pw5", NpgsqlDbType.Array | NpgsqlDbType.Numeric) { Value = write5m.ToArray() });
        command.Parameters.Add(new NpgsqlParameter("pw1", NpgsqlDbType.Array | NpgsqlDbType.Numeric) { Value = write1h.ToArray() });
        command.Parameters.Add(new NpgsqlParameter("prd", NpgsqlDbType.Array | NpgsqlDbType.Numeric) { Value = read.ToArray() });
        command.Parameters.AddWithValue("hin", prices.Highest.Input);
        command.Parameters.AddWithValue("hw5", prices.Highest.CacheWrite5m);
        command.Parameters.AddWithValue("hw1", prices.Highest.CacheWrite1h);
        command.Parameters.AddWithValue("hrd", prices.Highest.CacheRead);
    }

    /// <summary>A price book glob (<c>*</c> any run, <c>?</c> one character, case-sensitive) as a LIKE pattern.</summary>
    public static string LikePattern(string glob)
    {
        var like = new StringBuilder(glob.Length + 4);
        foreach (var c in glob)
        {
            like.Append(c switch
            {
                '*' => "%",
                '?' => "_",
                '%' or '_' or '\\' => "\\" + c,
                _ => c.ToString(),
            });
        }
        return like.ToString();
    }

    /// <summary>
    /// A command in a read-only transaction of its own, with the settings these reads need: no JIT compilation (it costs
    /// more than these queries take), room to aggregate in memory, and a bound on how long one page may hold Postgres.
    /// </summary>
    private async Task<Read> ReadAsync(string sql, CancellationToken ct)
    {
        var connection = await dataSource.OpenConnectionAsync(ct);
        try
        {
            var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.ReadCommitted, ct);
            await using (var settings = new NpgsqlCommand(
                "SET TRANSACTION READ ONLY; SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; SET LOCAL statement_timeout = '20s'", connection, transaction))
            {
                await settings.ExecuteNonQueryAsync(ct);
            }
            return new Read(connection, transaction, new NpgsqlCommand(sql, connection, transaction));
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private sealed class Read(NpgsqlConnection connection, NpgsqlTransaction transaction, NpgsqlCommand command) : IAsyncDisposable
    {
        public NpgsqlCommand Command => command;

        public async ValueTask DisposeAsync()
        {
            await command.DisposeAsync();
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }
    }

    private static long Long(NpgsqlDataReader reader, int i) => reader.IsDBNull(i) ? 0 : Convert.ToInt64(reader.GetValue(i), System.Globalization.CultureInfo.InvariantCulture);

    private static decimal Money(NpgsqlDataReader reader, int i) => reader.IsDBNull(i) ? 0m : reader.GetDecimal(i);
}
