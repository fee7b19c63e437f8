using System.Security.Cryptography;
using System.Text.Json;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Policies;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// A group's spend this period against its two caps (on each member, and on the pool all members share), and the
/// setting of those caps. A group's spend is the cost of the requests admitted under it (<c>usage_events.group_ids</c>)
/// in its current period, counted in its time zone.
/// </summary>
public static class GroupSpendApi
{
    /// <summary>The largest cap accepted, in USD.</summary>
    public const decimal MaxCapUsd = 1_000_000_000m;

    public static RouteGroupBuilder MapGroupSpendApi(this RouteGroupBuilder api)
    {
        var groups = api.MapGroup("/groups").WithTags("Groups");
        groups.MapGet("/spend", ListAsync).Produces<List<GroupSpendView>>().WithSummary("Every group's spend this period against its pool and member caps");
        groups.MapGet("/{id}/spend", GetAsync).Produces<GroupSpendView>().WithSummary("One group's spend this period against its pool and member caps");
        groups.MapPut("/{id}/caps", PutCapsAsync).Produces<GroupSpendView>().WithSummary("Set or remove a group's cap on each member and on its pool, in USD");
        return api;
    }

    private static string NewLimitId()
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        return "spl_" + RandomNumberGenerator.GetString(alphabet, 24);
    }

    private sealed record GroupRow(string GroupId, string Name, string Source, string? SpendPeriod, string? TimeZone, int MemberCount);

    private sealed class SpentRow
    {
        public required string GroupId { get; init; }
        public decimal Spent { get; init; }
    }

    private static IQueryable<GroupRow> Rows(GatewayDbContext db, IQueryable<GroupRecord> groups) => groups.Select(g => new GroupRow(
        g.GroupId, g.Name, g.Source, g.SpendPeriod, g.TimeZone,
        g.Source == GroupRecord.Manual
            ? db.GroupMembers.Count(x => x.GroupId == g.GroupId)
            : db.Users.Count(u => u.Groups.Contains(g.Name))));

    private static async Task<List<GroupSpendView>> ViewsAsync(GatewayDbContext db, IQueryable<GroupRecord> query, LimitOptions limits, DateTimeOffset now,
        CancellationToken ct)
    {
        var groups = await Rows(db, query.OrderBy(g => g.Name).ThenBy(g => g.GroupId)).ToListAsync(ct);
        if (groups.Count == 0)
        {
            return [];
        }
        var ids = groups.Select(g => g.GroupId).ToList();
        var caps = await db.SpendLimits.AsNoTracking()
            .Where(s => s.ScopeType == SpendLimitRecord.Group && ids.Contains(s.ScopeId))
            .ToListAsync(ct);
        var windows = groups.Select(g =>
        {
            var pool = caps.FirstOrDefault(c => c.ScopeId == g.GroupId && c.PooledBudget);
            var member = caps.FirstOrDefault(c => c.ScopeId == g.GroupId && !c.PooledBudget);
            // Admission counts a cap in its limit's period and the group's zone; the pool's period is the one shown.
            var period = SpendPeriods.Parse(pool?.Period) ?? SpendPeriods.Parse(member?.Period) ?? SpendPeriods.Parse(g.SpendPeriod) ?? limits.SpendPeriod;
            var zone = SpendPeriods.Zone(g.TimeZone) ?? TimeZoneInfo.Utc;
            var (start, end, _) = SpendPeriods.Of(period, now, zone);
            return (Group: g, Pool: pool, Member: member, Period: period, Zone: zone == TimeZoneInfo.Utc ? "UTC" : zone.Id, Start: start, End: end);
        }).ToList();

        // One pass over the events of the widest window, each group counting only its own period.
        var groupIds = windows.Select(w => w.Group.GroupId).ToArray();
        var starts = windows.Select(w => w.Start).ToArray();
        var ends = windows.Select(w => w.End).ToArray();
        var earliest = starts.Min();
        var spent = await db.Database.SqlQuery<SpentRow>($"""
            SELECT p.group_id AS group_id, SUM(u.cost_usd) AS spent
            FROM unnest({groupIds}::text[], {starts}::timestamptz[], {ends}::timestamptz[]) AS p(group_id, start_at, end_at)
            JOIN usage_events u ON u.time >= p.start_at AND u.time < p.end_at
            WHERE u.time >= {earliest} AND u.group_ids IS NOT NULL AND u.cost_usd IS NOT NULL
              AND p.group_id = ANY (string_to_array(u.group_ids, ' '))
            GROUP BY p.group_id
            """).ToDictionaryAsync(r => r.GroupId, r => r.Spent, ct);

        return windows.Select(w => new GroupSpendView(
            w.Group.GroupId, w.Group.Name, spent.GetValueOrDefault(w.Group.GroupId),
            w.Pool is null ? null : w.Pool.AmountCents / 100m,
            w.Member is null ? null : w.Member.AmountCents / 100m,
            SpendPeriods.ApiName(w.Period), w.Zone, w.Start, w.End, w.Pool?.SpendLimitId, w.Member?.SpendLimitId, w.Group.MemberCount)).ToList();
    }

    private static async Task ListAsync(HttpContext context, ManagementContext m, LimitOptions limits)
    {
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var views = await ViewsAsync(db, db.Groups.AsNoTracking(), limits, m.Time.GetUtcNow(), ct);
        await context.Response.WriteAsJsonAsync(views, ct);
    }

    private static async Task<bool> CheckIdAsync(string id, HttpContext context)
    {
        if (ManagedSettingsApi.IsGroupId(id))
        {
            return true;
        }
        await Errors.ApiErrors.WriteAsync(context, 400, "a group's id is grp_ and 16 lower-case letters or digits");
        return false;
    }

    private static async Task GetAsync(string id, HttpContext context, ManagementContext m, LimitOptions limits)
    {
        if (!await CheckIdAsync(id, context))
        {
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var views = await ViewsAsync(db, db.Groups.AsNoTracking().Where(g => g.GroupId == id), limits, m.Time.GetUtcNow(), ct);
        if (views.Count == 0)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no group '{id}'");
            return;
        }
        await context.Response.WriteAsJsonAsync(views[0], ct);
    }

    private const int MaxBodyBytes = 4096;

    /// <summary>
    /// The caps in the body, read strictly: each a JSON number or null (a number in a string, which the API's
    /// serializer would accept, is refused), or why the body is refused.
    /// </summary>
    private static async Task<(GroupCaps? Caps, string? Error)> ReadCapsAsync(HttpContext context)
    {
        const string shape = "the body must be a JSON object: member_cap_usd and pool_cap_usd, each a number of USD or null to remove it";
        if (context.Request.ContentLength > MaxBodyBytes)
        {
            return (null, shape);
        }
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(context.Request.Body, new JsonDocumentOptions { MaxDepth = 4 }, context.RequestAborted);
        }
        catch (JsonException)
        {
            return (null, shape);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return (null, shape);
            }
            decimal? member = null, pool = null;
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name is not ("member_cap_usd" or "pool_cap_usd"))
                {
                    return (null, $"unknown field '{(property.Name.Length > 64 ? property.Name[..64] : property.Name)}': {shape}");
                }
                decimal? value;
                switch (property.Value.ValueKind)
                {
                    case JsonValueKind.Null:
                        value = null;
                        break;
                    case JsonValueKind.Number when property.Value.TryGetDecimal(out var number):
                        value = number;
                        break;
                    default:
                        return (null, $"{property.Name} must be a number of USD, or null to remove the cap");
                }
                if (Validate(property.Name, value) is { } error)
                {
                    return (null, error);
                }
                if (property.Name == "member_cap_usd")
                {
                    member = value;
                }
                else
                {
                    pool = value;
                }
            }
            return (new GroupCaps(member, pool), null);
        }
    }

    internal static string? Validate(string field, decimal? cap) => cap switch
    {
        null => null,
        < 0 => $"{field} must not be negative",
        > MaxCapUsd => $"{field} must be at most {MaxCapUsd:0} USD",
        { } v when decimal.Round(v, 2) != v => $"{field} must be in whole cents (at most 2 decimals)",
        _ => null,
    };

    private static async Task PutCapsAsync(string id, HttpContext context, ManagementContext m, LimitOptions limits, PolicyChanges policyChanges)
    {
        if (!await CheckIdAsync(id, context))
        {
            return;
        }
        var (caps, error) = await ReadCapsAsync(context);
        if (caps is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, error!);
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var strategy = db.Database.CreateExecutionStrategy();
        bool found;
        try
        {
            found = await strategy.ExecuteAsync(async () =>
            {
                db.ChangeTracker.Clear();
                await using var transaction = await db.Database.BeginTransactionAsync(ct);
                var group = await db.Groups.AsNoTracking().FirstOrDefaultAsync(g => g.GroupId == id, ct);
                if (group is null)
                {
                    return false;
                }
                var period = SpendPeriods.ApiName(SpendPeriods.Parse(group.SpendPeriod) ?? limits.SpendPeriod);
                var rows = await db.SpendLimits.Where(s => s.ScopeType == SpendLimitRecord.Group && s.ScopeId == id).ToListAsync(ct);
                var before = Snapshot(rows);
                var now = m.Time.GetUtcNow();
                Apply(db, rows, id, pooled: false, caps.MemberCapUsd, period, now);
                Apply(db, rows, id, pooled: true, caps.PoolCapUsd, period, now);
                m.Audit(db, context, "group_caps", id, before, new { member_cap_usd = caps.MemberCapUsd, pool_cap_usd = caps.PoolCapUsd, period });
                await db.SaveChangesAsync(ct);
                await transaction.CommitAsync(ct);
                return true;
            });
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "invalid_request_error", $"the caps of '{id}' were set by a concurrent call: read them and try again");
            return;
        }
        if (!found)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no group '{id}'");
            return;
        }
        await policyChanges.ChangedAsync(ct);
        var views = await ViewsAsync(db, db.Groups.AsNoTracking().Where(g => g.GroupId == id), limits, m.Time.GetUtcNow(), ct);
        await context.Response.WriteAsJsonAsync(views[0], ct);
    }

    /// <summary>
    /// Moves the group's caps to its new spend period in the same save as the policy, so that the caps are counted
    /// over the period the group names.
    /// </summary>
    internal static async Task FollowPeriodAsync(GatewayDbContext db, string groupId, string? spendPeriod, LimitOptions limits, CancellationToken ct)
    {
        var period = SpendPeriods.ApiName(SpendPeriods.Parse(spendPeriod) ?? limits.SpendPeriod);
        foreach (var row in await db.SpendLimits.Where(s => s.ScopeType == SpendLimitRecord.Group && s.ScopeId == groupId && s.Period != period).ToListAsync(ct))
        {
            row.Period = period;
        }
    }

    private static object Snapshot(List<SpendLimitRecord> rows) => new
    {
        member_cap_usd = rows.FirstOrDefault(r => !r.PooledBudget)?.AmountCents / 100m,
        pool_cap_usd = rows.FirstOrDefault(r => r.PooledBudget)?.AmountCents / 100m,
        period = rows.FirstOrDefault()?.Period,
    };

    private static void Apply(GatewayDbContext db, List<SpendLimitRecord> rows, string groupId, bool pooled, decimal? capUsd, string period, DateTimeOffset now)
    {
        var row = rows.FirstOrDefault(r => r.PooledBudget == pooled);
        if (capUsd is not { } cap)
        {
            if (row is not null)
            {
                db.SpendLimits.Remove(row);
            }
            return;
        }
        if (row is null)
        {
            row = new SpendLimitRecord
            {
                SpendLimitId = NewLimitId(), ScopeType = SpendLimitRecord.Group, ScopeId = groupId, PooledBudget = pooled, Period = period, Currency = "USD",
                CreatedAt = now,
            };
            db.SpendLimits.Add(row);
        }
        row.AmountCents = (long)(cap * 100m);
        row.Period = period;
        row.UpdatedAt = now;
    }
}
