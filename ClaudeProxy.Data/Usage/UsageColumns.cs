using System.Globalization;
using System.Linq.Expressions;
using Npgsql;
using NpgsqlTypes;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>Where a usage column is shown besides the <c>usage_events</c> table.</summary>
[Flags]
public enum UsageShown
{
    Stored = 0,
    /// <summary>The operators' CSV export (<c>/manage/v1/usage/export.csv</c>), in the table's order.</summary>
    Csv = 1,
    /// <summary>The operators' event listing (<c>/manage/v1/usage/events</c>).</summary>
    Events = 2,
    /// <summary>A device's own request list (<c>/admin/usage</c>).</summary>
    Device = 4,
}

/// <summary>One column of <c>usage_events</c>.</summary>
/// <param name="Name">The column's name in Postgres, in the COPY column list and in the CSV header.</param>
/// <param name="Property">The <see cref="UsageEvent"/> property it holds (the EF model maps it to <paramref name="Name"/>).</param>
/// <param name="Type">Its Postgres type, as the binary COPY writes it.</param>
/// <param name="Shown">Where it is shown besides the table.</param>
/// <param name="Write">Writes the event's value as the column of the current COPY row.</param>
/// <param name="CsvField">The event's value as a CSV field: invariant culture, text quoted and defused against spreadsheet formulas.</param>
public sealed record UsageColumn(string Name, string Property, NpgsqlDbType Type, UsageShown Shown, Action<NpgsqlBinaryImporter, UsageEvent> Write,
    Func<UsageEvent, string> CsvField)
{
    internal static UsageColumn Of<T>(string name, Expression<Func<UsageEvent, T>> property, NpgsqlDbType type, UsageShown shown,
        Action<NpgsqlBinaryImporter, T> write, Func<T, string> csv)
    {
        var get = property.Compile();
        return new(name, ((MemberExpression)property.Body).Member.Name, type, shown, (importer, usage) => write(importer, get(usage)), usage => csv(get(usage)));
    }
}

/// <summary>
/// The usage row, defined once: the COPY column list and write order, the EF mapping of <c>usage_events</c>, the CSV
/// export's header and fields and which columns the usage views show all come from <see cref="All"/>. A new column is
/// a property on <see cref="UsageEvent"/>, an entry here, and a migration.
/// </summary>
public static class UsageColumns
{
    public static readonly IReadOnlyList<UsageColumn> All =
    [
        Value("id", u => u.Id, NpgsqlDbType.Uuid, UsageShown.Events | UsageShown.Device),
        Time("time", u => u.Time, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Text("device_id", u => u.DeviceId, UsageShown.Csv | UsageShown.Events),
        Text("user_id", u => u.UserId, UsageShown.Csv),
        Text("org_id", u => u.OrgId, UsageShown.Stored),
        Text("session_id", u => u.SessionId, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Text("agent_id", u => u.AgentId, UsageShown.Stored),
        Text("model", u => u.Model, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Text("endpoint", u => u.Endpoint, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Value("status", u => u.Status, NpgsqlDbType.Integer, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Flag("streamed", u => u.Streamed, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Count("input_tokens", u => u.InputTokens, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Count("output_tokens", u => u.OutputTokens, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Count("cache_write_5m_tokens", u => u.CacheWrite5mTokens, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Count("cache_write_1h_tokens", u => u.CacheWrite1hTokens, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Count("cache_read_tokens", u => u.CacheReadTokens, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Count("web_search_requests", u => u.WebSearchRequests, UsageShown.Csv),
        Count("web_fetch_requests", u => u.WebFetchRequests, UsageShown.Stored),
        Money("cost_usd", u => u.CostUsd, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Millis("latency_ms", u => u.LatencyMs, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Millis("ttfb_ms", u => u.TimeToFirstByteMs, UsageShown.Csv | UsageShown.Events),
        // Before upstream_request_id: the CSV export has always had it there.
        Flag("cancelled", u => u.Cancelled, UsageShown.Csv | UsageShown.Events | UsageShown.Device),
        Text("upstream_request_id", u => u.UpstreamRequestId, UsageShown.Csv | UsageShown.Events),
        Text("correlation_id", u => u.CorrelationId, UsageShown.Csv | UsageShown.Events),
        Flag("stream_error", u => u.StreamError, UsageShown.Stored),
        Flag("cost_estimated", u => u.CostEstimated, UsageShown.Events),
        Flag("output_estimated", u => u.OutputEstimated, UsageShown.Events),
        // Last, so that the CSV export only grows at its end.
        Text("user_email", u => u.UserEmail, UsageShown.Csv | UsageShown.Events),
        Text("group_ids", u => u.GroupIds, UsageShown.Csv),
        Text("parent_agent_id", u => u.ParentAgentId, UsageShown.Stored),
    ];

    /// <summary>The columns of the CSV export, in its order.</summary>
    public static readonly IReadOnlyList<UsageColumn> Csv = [.. All.Where(c => c.Shown.HasFlag(UsageShown.Csv))];

    /// <summary>The CSV export's header line.</summary>
    public static readonly string CsvHeader = string.Join(',', Csv.Select(c => c.Name));

    /// <summary>The column list of the COPY into the staging table and of the move into <c>usage_events</c>.</summary>
    public static readonly string List = string.Join(", ", All.Select(c => c.Name));

    /// <summary>
    /// Writes one event as one COPY row, column by column in the order of <see cref="List"/>. Synchronous writes: they
    /// fill Npgsql's buffer and only touch the socket when it is full, which on the writer's background loop costs far
    /// less than an async state machine per column.
    /// </summary>
    public static void WriteRow(NpgsqlBinaryImporter importer, UsageEvent usage)
    {
        importer.StartRow();
        foreach (var column in All)
        {
            column.Write(importer, usage);
        }
    }

    /// <summary>One event as a CSV line (without the line break).</summary>
    public static string CsvLine(UsageEvent usage) => string.Join(',', Csv.Select(c => c.CsvField(usage)));

    /// <summary>A CSV field: quoted when needed, and a leading formula character defused.</summary>
    public static string CsvText(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return "";
        }
        var safe = value[0] is '=' or '+' or '-' or '@' or '\t' or '\r' ? "'" + value : value;
        return safe.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + safe.Replace("\"", "\"\"") + "\"" : safe;
    }

    private static UsageColumn Value<T>(string name, Expression<Func<UsageEvent, T>> property, NpgsqlDbType type, UsageShown shown)
        where T : struct, IFormattable =>
        UsageColumn.Of(name, property, type, shown, (importer, value) => importer.Write(value, type), value => value.ToString(null, CultureInfo.InvariantCulture));

    private static UsageColumn Count(string name, Expression<Func<UsageEvent, long>> property, UsageShown shown) =>
        Value(name, property, NpgsqlDbType.Bigint, shown);

    private static UsageColumn Time(string name, Expression<Func<UsageEvent, DateTimeOffset>> property, UsageShown shown) =>
        UsageColumn.Of(name, property, NpgsqlDbType.TimestampTz, shown, (importer, value) => importer.Write(value, NpgsqlDbType.TimestampTz),
            value => value.UtcDateTime.ToString("o", CultureInfo.InvariantCulture));

    private static UsageColumn Text(string name, Expression<Func<UsageEvent, string?>> property, UsageShown shown) =>
        UsageColumn.Of(name, property, NpgsqlDbType.Text, shown, (importer, value) => Nullable(importer, value, NpgsqlDbType.Text), CsvText);

    private static UsageColumn Flag(string name, Expression<Func<UsageEvent, bool>> property, UsageShown shown) =>
        UsageColumn.Of(name, property, NpgsqlDbType.Boolean, shown, (importer, value) => importer.Write(value, NpgsqlDbType.Boolean), value => value ? "true" : "false");

    private static UsageColumn Money(string name, Expression<Func<UsageEvent, decimal?>> property, UsageShown shown) =>
        UsageColumn.Of(name, property, NpgsqlDbType.Numeric, shown, (importer, value) => Nullable(importer, value, NpgsqlDbType.Numeric),
            value => value?.ToString(CultureInfo.InvariantCulture) ?? "");

    private static UsageColumn Millis(string name, Expression<Func<UsageEvent, double>> property, UsageShown shown) =>
        UsageColumn.Of(name, property, NpgsqlDbType.Double, shown, (importer, value) => importer.Write(value, NpgsqlDbType.Double),
            value => value.ToString("0.###", CultureInfo.InvariantCulture));

    private static UsageColumn Millis(string name, Expression<Func<UsageEvent, double?>> property, UsageShown shown) =>
        UsageColumn.Of(name, property, NpgsqlDbType.Double, shown, (importer, value) => Nullable(importer, value, NpgsqlDbType.Double),
            value => value?.ToString("0.###", CultureInfo.InvariantCulture) ?? "");

    private static void Nullable<T>(NpgsqlBinaryImporter importer, T? value, NpgsqlDbType type) where T : class
    {
        if (value is null)
        {
            importer.WriteNull();
        }
        else
        {
            importer.Write(value, type);
        }
    }

    private static void Nullable<T>(NpgsqlBinaryImporter importer, T? value, NpgsqlDbType type) where T : struct
    {
        if (value is T present)
        {
            importer.Write(present, type);
        }
        else
        {
            importer.WriteNull();
        }
    }
}
