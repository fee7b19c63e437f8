using System.Reflection;
using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace ClaudeProxy.Tests.Usage;

/// <summary>
/// A usage column exists everywhere or nowhere: the event, the column table, the EF model, the COPY statement, the CSV
/// export and the usage views agree, and what the writer copies into Postgres is what is read back, column by column.
/// </summary>
public sealed class UsageColumnsTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private const string CsvHeader = "time,device_id,user_id,session_id,model,endpoint,status,streamed,input_tokens,output_tokens," +
        "cache_write_5m_tokens,cache_write_1h_tokens,cache_read_tokens,web_search_requests,cost_usd,latency_ms,ttfb_ms,cancelled,upstream_request_id,correlation_id,user_email,group_ids";

    /// <summary>Every field set, each to a value no other field has (the flags apart, which <see cref="Samples"/> flips one by one).</summary>
    private static readonly UsageEvent Sample = new()
    {
        Id = Guid.Parse("0b1e7c5a-1d2e-4f30-8a4b-5c6d7e8f9012"), Time = new DateTimeOffset(2026, 11, 26, 10, 11, 12, TimeSpan.Zero).AddTicks(1_234_560),
        DeviceId = "device-7", UserId = "-user-7", OrgId = "org-7", SessionId = "session-7", AgentId = "agent-7",
        Model = "claude-sonnet-4-5", Endpoint = "messages", Status = 529, Streamed = true,
        InputTokens = 11, OutputTokens = 12, CacheWrite5mTokens = 13, CacheWrite1hTokens = 14, CacheReadTokens = 15, WebSearchRequests = 16, WebFetchRequests = 17,
        CostUsd = 0.0123456789m, LatencyMs = 123.4567, TimeToFirstByteMs = 45.6, UpstreamRequestId = "req_7", CorrelationId = "corr,7", UserEmail = "user-7@example.com",
        GroupIds = "grp_aaaaaaaaaaaaaaaa grp_bbbbbbbbbbbbbbbb", ParentAgentId = "agent-6",
        Cancelled = false, StreamError = true, CostEstimated = false, OutputEstimated = true,
    };

    private static readonly PropertyInfo[] EventProperties = typeof(UsageEvent).GetProperties(BindingFlags.Public | BindingFlags.Instance);

    [Fact]
    public void Every_event_property_is_one_column_and_every_column_one_event_property()
    {
        Assert.Equal(Sorted(EventProperties.Select(p => p.Name)), Sorted(UsageColumns.All.Select(c => c.Property)));
        Assert.Equal(UsageColumns.All.Count, UsageColumns.All.Select(c => c.Name).Distinct().Count());
        Assert.All(UsageColumns.All, c => Assert.Matches("^[a-z][a-z0-9_]*$", c.Name));
    }

    [Fact]
    public void The_EF_model_and_the_migrations_map_usage_events_to_exactly_the_table_columns_with_their_postgres_types()
    {
        using var context = new DesignTimeFactory().CreateDbContext([]);
        var model = context.GetService<IDesignTimeModel>().Model;
        var table = model.GetRelationalModel().FindTable("usage_events", null);
        Assert.NotNull(table);
        Assert.Equal(Sorted(UsageColumns.All.Select(c => $"{c.Property} -> {c.Name}")),
            Sorted(table.Columns.Select(c => $"{Assert.Single(c.PropertyMappings).Property.Name} -> {c.Name}")));
        // The migrations' snapshot is written apart from the table: it catches a column whose name and property were swapped.
        var snapshot = context.GetService<IMigrationsAssembly>().ModelSnapshot!.Model.FindEntityType(typeof(UsageEvent).FullName!);
        Assert.NotNull(snapshot);
        Assert.Equal(Sorted(UsageColumns.All.Select(c => $"{c.Property} -> {c.Name}")),
            Sorted(snapshot.GetProperties().Select(p => $"{p.Name} -> {p.GetColumnName()}")));
        foreach (var column in UsageColumns.All)
        {
            var type = new NpgsqlParameter { NpgsqlDbType = column.Type }.DataTypeName;
            Assert.Equal(type, Regex.Replace(table.FindColumn(column.Name)!.StoreType, @"\(.*\)$", ""));
        }
    }

    [Fact]
    public void The_migrations_history_keeps_the_column_names_deployed_databases_have()
    {
        using var context = new DesignTimeFactory().CreateDbContext([]);
        var script = context.GetService<IHistoryRepository>().GetCreateScript();
        Assert.Contains("\"MigrationId\"", script);
        Assert.Contains("\"ProductVersion\"", script);
    }

    [Fact]
    public void The_copy_and_the_move_into_usage_events_list_the_table_columns_in_the_order_they_are_written()
    {
        var list = string.Join(", ", UsageColumns.All.Select(c => c.Name));
        Assert.Equal($"COPY usage_staging ({list}) FROM STDIN (FORMAT BINARY)", UsageSql.CopyStaging);
        Assert.Contains($"INSERT INTO usage_events ({list}) SELECT {list} FROM usage_staging", UsageSql.MergeStaging);
    }

    [Fact]
    public void The_csv_export_keeps_its_header_and_field_formats()
    {
        Assert.Equal(CsvHeader, UsageColumns.CsvHeader);
        Assert.Equal(CsvHeader.Split(','), UsageColumns.All.Where(c => c.Shown.HasFlag(UsageShown.Csv)).Select(c => c.Name));
        Assert.Equal("2026-11-26T10:11:12.1234560Z,device-7,'-user-7,session-7,claude-sonnet-4-5,messages,529,true,11,12,13,14,15,16," +
            "0.0123456789,123.457,45.6,false,req_7,\"corr,7\",user-7@example.com,grp_aaaaaaaaaaaaaaaa grp_bbbbbbbbbbbbbbbb", UsageColumns.CsvLine(Sample));
        Assert.Equal("2026-11-26T10:11:12.1234560Z,device-7,'-user-7,,claude-sonnet-4-5,messages,529,true,11,12,13,14,15,16,,123.457,,false,,\"corr,7\",,",
            UsageColumns.CsvLine(Sample with { SessionId = null, CostUsd = null, TimeToFirstByteMs = null, UpstreamRequestId = null, UserEmail = null, GroupIds = null }));
    }

    [Fact]
    public void The_operators_event_view_shows_exactly_its_columns_each_from_its_own_field()
    {
        ShowsExactly(UsageShown.Events, UsageManagementApi.EventOf);
    }

    [Fact]
    public void The_devices_usage_view_shows_exactly_its_columns_each_from_its_own_field()
    {
        ShowsExactly(UsageShown.Device, DeviceUsageApi.ItemOf);
    }

    [Fact]
    public async Task An_event_written_by_the_copy_writer_reads_back_the_same_in_every_column()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var sent = Sample with { Id = Guid.NewGuid() };
        // Postgres keeps microseconds: the times sent are whole microseconds so that they compare equal.
        var sparse = TestEvents.Usage() with { CostUsd = null, Time = Sample.Time.AddMinutes(1) };
        var writer = gateway.Services.GetRequiredService<UsageWriter>();
        gateway.Services.GetRequiredService<IUsageSink>().Enqueue(sent);
        gateway.Services.GetRequiredService<IUsageSink>().Enqueue(sparse);
        await writer.WaitForStoredAsync(2).WaitAsync(TimeSpan.FromSeconds(60));

        foreach (var usage in new[] { sent, sparse })
        {
            await using var connection = fx.Connect(db);
            await using var select = new NpgsqlCommand("SELECT * FROM usage_events WHERE id = @id", connection);
            select.Parameters.AddWithValue("id", usage.Id);
            await using var reader = await select.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync());
            Assert.Equal(UsageColumns.All.Count, reader.FieldCount);
            foreach (var column in UsageColumns.All)
            {
                var expected = typeof(UsageEvent).GetProperty(column.Property)!.GetValue(usage) switch
                {
                    null => DBNull.Value,
                    DateTimeOffset time => time.UtcDateTime,
                    var value => value,
                };
                Assert.True(Equals(expected, reader.GetValue(reader.GetOrdinal(column.Name))), $"{column.Name}: sent {expected}, read {reader.GetValue(reader.GetOrdinal(column.Name))}");
            }
        }

        await using var context = await gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();
        Assert.Equal(sent, await context.UsageEvents.AsNoTracking().SingleAsync(u => u.Id == sent.Id));
        Assert.Equal(sparse, await context.UsageEvents.AsNoTracking().SingleAsync(u => u.Id == sparse.Id));
    }

    /// <summary>The view's properties are the columns marked for it, and each holds the event's field of its name.</summary>
    private static void ShowsExactly<TView>(UsageShown view, Func<UsageEvent, TView> show)
    {
        var properties = typeof(TView).GetProperties(BindingFlags.Public | BindingFlags.Instance);
        Assert.Equal(Sorted(UsageColumns.All.Where(c => c.Shown.HasFlag(view)).Select(c => c.Property)), Sorted(properties.Select(p => p.Name)));
        foreach (var usage in Samples())
        {
            var shown = show(usage);
            foreach (var property in properties)
            {
                Assert.Equal(typeof(UsageEvent).GetProperty(property.Name)!.GetValue(usage), property.GetValue(shown));
            }
        }
    }

    /// <summary>The sample, and the sample with one flag flipped for each flag: a view that shows one flag in another's place differs in one of them.</summary>
    private static IEnumerable<UsageEvent> Samples()
    {
        yield return Sample;
        var clone = typeof(UsageEvent).GetMethod("<Clone>$")!;
        foreach (var flag in EventProperties.Where(p => p.PropertyType == typeof(bool)))
        {
            var flipped = (UsageEvent)clone.Invoke(Sample, null)!;
            flag.SetValue(flipped, !(bool)flag.GetValue(Sample)!);
            yield return flipped;
        }
    }

    private static List<string> Sorted(IEnumerable<string> names) => [.. names.Order(StringComparer.Ordinal)];
}
