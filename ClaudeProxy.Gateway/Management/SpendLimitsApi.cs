using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Policies;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// Spend limits in the shape of Anthropic's Admin API (<c>/v1/organizations/spend_limits</c>), on the management port,
/// so scripts written for that API work here: a cap per person, per group (each member's, or the group's shared pool)
/// or for the whole organisation. One limit per scope and kind: setting another replaces it in place.
/// </summary>
public static partial class SpendLimitsApi
{
    /// <summary>The largest amount taken: a billion dollars, in cents.</summary>
    public const long MaxAmountCents = 100_000_000_000;

    private const int MaxBodyBytes = 16 * 1024;
    private const int DefaultPageSize = 20;
    private const int MaxPageSize = 1000;
    private const string Usd = "USD";
    private static readonly string[] Periods = ["daily", "weekly", "monthly"];
    private static readonly string[] ScopeTypes = [SpendLimitRecord.Organization, SpendLimitRecord.Group, SpendLimitRecord.User];

    [GeneratedRegex(@"^spl_[a-z0-9]{24}\z")]
    private static partial Regex SpendLimitIdPattern();

    public static bool IsSpendLimitId(string? id) => id is not null && SpendLimitIdPattern().IsMatch(id);

    public static RouteGroupBuilder MapSpendLimitsApi(this RouteGroupBuilder api)
    {
        var limits = api.MapGroup("/spend_limits").WithTags("Spend limits");
        limits.MapGet("/", List).Produces<SpendLimitPage>()
            .WithSummary("List spend limits: organization first, then groups, then people; paged with limit, after_id and before_id");
        limits.MapGet("/{id}", Get).Produces<SpendLimitView>().WithSummary("One spend limit");
        limits.MapPost("/", Set).Produces<SpendLimitView>(201).Produces<SpendLimitView>()
            .WithSummary("Set the spend limit of a person, a group (each member's or the shared pool) or the organization; 201 when new, 200 when it replaced one");
        limits.MapDelete("/{id}", Delete).Produces<SpendLimitDeleted>().WithSummary("Delete a spend limit");
        return api;
    }

    private static string NewId()
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        return "spl_" + RandomNumberGenerator.GetString(alphabet, 24);
    }

    internal static SpendLimitView View(SpendLimitRecord l) => new(
        "spend_limit", l.SpendLimitId,
        l.ScopeType switch
        {
            SpendLimitRecord.User => new SpendLimitScope(l.ScopeType, UserId: l.ScopeId),
            SpendLimitRecord.Group => new SpendLimitScope(l.ScopeType, RbacGroupId: l.ScopeId),
            _ => new SpendLimitScope(l.ScopeType),
        },
        l.AmountCents.ToString(CultureInfo.InvariantCulture), l.Currency, l.Period,
        l.ScopeType == SpendLimitRecord.Group ? l.PooledBudget : null, true, l.CreatedAt, l.UpdatedAt);

    private static object Snapshot(SpendLimitRecord l) => new
    {
        scope_type = l.ScopeType, scope_id = l.ScopeId, pooled_budget = l.PooledBudget, amount_cents = l.AmountCents, period = l.Period,
        currency = l.Currency,
    };

    /// <summary>A valid request to set a limit.</summary>
    internal sealed record SetRequest(string ScopeType, string ScopeId, bool PooledBudget, long AmountCents, string Period, string Currency);

    /// <summary>
    /// Reads the body of a set request. Unknown fields are ignored, as Anthropic's API does; <c>amount</c> may be a string
    /// of digits (Anthropic's form) or a JSON integer; <c>period</c> defaults to monthly and <c>currency</c> to USD.
    /// </summary>
    internal static string? Parse(JsonElement body, out SetRequest? request)
    {
        request = null;
        if (body.ValueKind != JsonValueKind.Object)
        {
            return "the body must be a JSON object with scope, amount, period and currency";
        }
        if (!body.TryGetProperty("scope", out var scope) || scope.ValueKind != JsonValueKind.Object)
        {
            return """scope must be an object: {"type":"user","user_id":…}, {"type":"rbac_group","rbac_group_id":…} or {"type":"organization"}""";
        }
        var type = String(scope, "type");
        string scopeId;
        switch (type)
        {
            case SpendLimitRecord.User:
                scopeId = String(scope, "user_id") ?? "";
                if (!UsersApi.IsUserId(scopeId))
                {
                    return "scope.user_id must be a person's id: usr_ and 16 lower-case letters or digits";
                }
                break;
            case SpendLimitRecord.Group:
                scopeId = String(scope, "rbac_group_id") ?? "";
                if (!ManagedSettingsApi.IsGroupId(scopeId))
                {
                    return "scope.rbac_group_id must be a group's id: grp_ and 16 lower-case letters or digits";
                }
                break;
            case SpendLimitRecord.Organization:
                scopeId = "";
                break;
            default:
                return "scope.type must be user, rbac_group or organization";
        }

        var pooled = false;
        if (body.TryGetProperty("pooled_budget", out var pooledValue) && pooledValue.ValueKind != JsonValueKind.Null)
        {
            if (type != SpendLimitRecord.Group)
            {
                return "pooled_budget applies to rbac_group scopes only";
            }
            if (pooledValue.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return "pooled_budget must be true (the group's shared pool) or false (each member's cap)";
            }
            pooled = pooledValue.GetBoolean();
        }

        if (ParseAmount(body) is not { } amount)
        {
            return $"amount must be whole cents as a decimal string, from \"0\" to \"{MaxAmountCents}\" (\"50000\" is $500.00)";
        }

        var period = "monthly";
        if (body.TryGetProperty("period", out var periodValue) && periodValue.ValueKind != JsonValueKind.Null)
        {
            if (periodValue.ValueKind != JsonValueKind.String || !Periods.Contains(periodValue.GetString()))
            {
                return "period must be daily, weekly or monthly";
            }
            period = periodValue.GetString()!;
        }

        if (body.TryGetProperty("currency", out var currency) && currency.ValueKind != JsonValueKind.Null &&
            (currency.ValueKind != JsonValueKind.String || currency.GetString() != Usd))
        {
            return "currency must be USD";
        }

        request = new SetRequest(type, scopeId, pooled, amount, period, Usd);
        return null;
    }

    private static string? String(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static long? ParseAmount(JsonElement body)
    {
        if (!body.TryGetProperty("amount", out var value))
        {
            return null;
        }
        long cents;
        if (value.ValueKind == JsonValueKind.String)
        {
            // Digits only: no sign, spaces, decimal point or exponent, which long.Parse would otherwise take or round.
            var text = value.GetString()!;
            if (text.Length is 0 or > 12 || !text.All(char.IsAsciiDigit))
            {
                return null;
            }
            cents = long.Parse(text, CultureInfo.InvariantCulture);
        }
        else if (value.ValueKind != JsonValueKind.Number || !value.GetRawText().All(char.IsAsciiDigit) || !value.TryGetInt64(out cents))
        {
            return null;
        }
        return cents is >= 0 and <= MaxAmountCents ? cents : null;
    }

    /// <summary>The body as JSON, or an error already written (413 past <see cref="MaxBodyBytes"/>, 400 for anything not JSON).</summary>
    private static async Task<JsonDocument?> ReadJsonAsync(HttpContext context)
    {
        if (context.Request.ContentLength > MaxBodyBytes)
        {
            await ApiErrors.WriteAsync(context, 413, $"the body must be at most {MaxBodyBytes} bytes");
            return null;
        }
        var buffer = new byte[MaxBodyBytes + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = await context.Request.Body.ReadAsync(buffer.AsMemory(length), context.RequestAborted)) > 0)
        {
            length += read;
        }
        if (length > MaxBodyBytes)
        {
            await ApiErrors.WriteAsync(context, 413, $"the body must be at most {MaxBodyBytes} bytes");
            return null;
        }
        try
        {
            return JsonDocument.Parse(buffer.AsMemory(0, length), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException)
        {
            await ApiErrors.WriteAsync(context, 400, "the body must be a JSON object with scope, amount, period and currency");
            return null;
        }
    }

    /// <summary>
    /// Creates the scope's limit or replaces it in place (same id and created_at, new updated_at), like Anthropic's
    /// upsert. The scope's existing row is locked while it is replaced; two concurrent first creations meet at the
    /// unique index, and the loser retries as a replacement, so a scope never holds two limits.
    /// </summary>
    private static async Task Set(HttpContext context, ManagementContext m, PolicyChanges policyChanges)
    {
        SetRequest? request;
        using (var body = await ReadJsonAsync(context))
        {
            if (body is null)
            {
                return;
            }
            if (Parse(body.RootElement, out request) is { } error)
            {
                await ApiErrors.WriteAsync(context, 400, error);
                return;
            }
        }
        var set = request!;
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (set.ScopeType == SpendLimitRecord.User && !await db.Users.AnyAsync(u => u.UserId == set.ScopeId, ct))
        {
            await ApiErrors.WriteAsync(context, 404, "not_found_error", $"no person '{set.ScopeId}'");
            return;
        }
        var strategy = db.Database.CreateExecutionStrategy();
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var (limit, created) = await strategy.ExecuteAsync(() => UpsertAsync(db, set, context, m, ct));
                if (limit is null)
                {
                    await ApiErrors.WriteAsync(context, 404, "not_found_error", $"no group '{set.ScopeId}'");
                    return;
                }
                await policyChanges.ChangedAsync(ct);
                context.Response.StatusCode = created ? StatusCodes.Status201Created : StatusCodes.Status200OK;
                await context.Response.WriteAsJsonAsync(View(limit), ct);
                return;
            }
            catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } && attempt < 3)
            {
                // Another call created this scope's limit first: replace it.
            }
        }
    }

    private static async Task<(SpendLimitRecord? Limit, bool Created)> UpsertAsync(GatewayDbContext db, SetRequest set, HttpContext context,
        ManagementContext m, CancellationToken ct)
    {
        db.ChangeTracker.Clear();
        await using var transaction = await db.Database.BeginTransactionAsync(ct);
        // The group's row is held (FOR SHARE) until commit, so the group cannot be deleted under a limit being set on it.
        if (set.ScopeType == SpendLimitRecord.Group &&
            (await db.Groups.FromSql($"SELECT * FROM groups WHERE group_id = {set.ScopeId} FOR SHARE").ToListAsync(ct)).Count == 0)
        {
            return (null, false);
        }
        // Postgres keeps microseconds: the answer shows the times a later read returns.
        var now = m.Time.GetUtcNow();
        now = now.AddTicks(-(now.Ticks % 10));
        var limit = (await db.SpendLimits.FromSql(
                $"SELECT * FROM spend_limits WHERE scope_type = {set.ScopeType} AND scope_id = {set.ScopeId} AND pooled_budget = {set.PooledBudget} FOR UPDATE")
            .ToListAsync(ct)).FirstOrDefault();
        var created = limit is null;
        object? before = null;
        if (limit is null)
        {
            limit = new SpendLimitRecord
            {
                SpendLimitId = NewId(), ScopeType = set.ScopeType, ScopeId = set.ScopeId, PooledBudget = set.PooledBudget, Period = set.Period,
                Currency = set.Currency, CreatedAt = now,
            };
            db.SpendLimits.Add(limit);
        }
        else
        {
            before = Snapshot(limit);
        }
        limit.AmountCents = set.AmountCents;
        limit.Period = set.Period;
        limit.Currency = set.Currency;
        limit.UpdatedAt = now;
        m.Audit(db, context, created ? "spend_limit_create" : "spend_limit_replace", limit.SpendLimitId, before, Snapshot(limit));
        await db.SaveChangesAsync(ct);
        await transaction.CommitAsync(ct);
        return (limit, created);
    }

    private static async Task Get(string id, HttpContext context, ManagementContext m)
    {
        if (!IsSpendLimitId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync(context.RequestAborted);
        if (await db.SpendLimits.AsNoTracking().FirstOrDefaultAsync(l => l.SpendLimitId == id, context.RequestAborted) is not { } limit)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        await context.Response.WriteAsJsonAsync(View(limit), context.RequestAborted);
    }

    private static async Task Delete(string id, HttpContext context, ManagementContext m, PolicyChanges policyChanges)
    {
        if (!IsSpendLimitId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var strategy = db.Database.CreateExecutionStrategy();
        var found = await strategy.ExecuteAsync(async () =>
        {
            db.ChangeTracker.Clear();
            await using var transaction = await db.Database.BeginTransactionAsync(ct);
            var limit = (await db.SpendLimits.FromSql($"SELECT * FROM spend_limits WHERE spend_limit_id = {id} FOR UPDATE").ToListAsync(ct)).FirstOrDefault();
            if (limit is null)
            {
                return false;
            }
            db.SpendLimits.Remove(limit);
            m.Audit(db, context, "spend_limit_delete", id, Snapshot(limit), null);
            await db.SaveChangesAsync(ct);
            await transaction.CommitAsync(ct);
            return true;
        });
        if (!found)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        await policyChanges.ChangedAsync(ct);
        await context.Response.WriteAsJsonAsync(new SpendLimitDeleted("spend_limit_deleted", id), ct);
    }

    /// <summary>
    /// Pages in one fixed order: organization, then groups, then people (Anthropic's order of scope types), and by id
    /// within a type. <c>after_id</c> (or the SDKs' <c>page</c>) walks forward from a limit, <c>before_id</c> back.
    /// </summary>
    private static async Task List(HttpContext context, ManagementContext m)
    {
        var query = context.Request.Query;
        foreach (var name in new[] { "limit", "after_id", "before_id", "page", "user_id", "rbac_group_id" })
        {
            if (query[name].Count > 1)
            {
                await ApiErrors.WriteAsync(context, 400, $"{name} may be given once");
                return;
            }
        }
        var size = DefaultPageSize;
        if (query["limit"].ToString() is { Length: > 0 } limitText &&
            (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out size) || size is < 1 or > MaxPageSize))
        {
            await ApiErrors.WriteAsync(context, 400, $"limit must be a whole number from 1 to {MaxPageSize}");
            return;
        }
        var after = query["after_id"].ToString() is { Length: > 0 } a ? a : query["page"].ToString() is { Length: > 0 } p ? p : null;
        var before = query["before_id"].ToString() is { Length: > 0 } b ? b : null;
        if (after is not null && before is not null)
        {
            await ApiErrors.WriteAsync(context, 400, "give after_id or before_id, not both");
            return;
        }
        var types = query["scope_type"].SelectMany(t => (t ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Distinct().ToList();
        if (types.Count > ScopeTypes.Length || types.Any(t => !ScopeTypes.Contains(t)))
        {
            await ApiErrors.WriteAsync(context, 400, "scope_type must be user, rbac_group or organization");
            return;
        }
        var userId = query["user_id"].ToString() is { Length: > 0 } u ? u : null;
        if (userId is not null && !UsersApi.IsUserId(userId))
        {
            await ApiErrors.WriteAsync(context, 400, "user_id must be a person's id: usr_ and 16 lower-case letters or digits");
            return;
        }
        var groupId = query["rbac_group_id"].ToString() is { Length: > 0 } g ? g : null;
        if (groupId is not null && !ManagedSettingsApi.IsGroupId(groupId))
        {
            await ApiErrors.WriteAsync(context, 400, "rbac_group_id must be a group's id: grp_ and 16 lower-case letters or digits");
            return;
        }

        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var limits = db.SpendLimits.AsNoTracking();
        if (types.Count > 0)
        {
            limits = limits.Where(l => types.Contains(l.ScopeType));
        }
        if (userId is not null)
        {
            limits = limits.Where(l => l.ScopeType == SpendLimitRecord.User && l.ScopeId == userId);
        }
        if (groupId is not null)
        {
            limits = limits.Where(l => l.ScopeType == SpendLimitRecord.Group && l.ScopeId == groupId);
        }
        var ranked = limits.Select(l => new RankedLimit
        {
            Limit = l,
            Rank = l.ScopeType == SpendLimitRecord.Organization ? 0 : l.ScopeType == SpendLimitRecord.Group ? 1 : 2,
        });

        var cursorId = after ?? before;
        int cursorRank = 0;
        if (cursorId is not null)
        {
            var cursor = IsSpendLimitId(cursorId)
                ? await db.SpendLimits.AsNoTracking().Where(l => l.SpendLimitId == cursorId).Select(l => l.ScopeType).FirstOrDefaultAsync(ct)
                : null;
            if (cursor is null)
            {
                await ApiErrors.WriteAsync(context, 400, $"{(after is not null ? "after_id" : "before_id")}: no spend limit '{cursorId}' to page from");
                return;
            }
            cursorRank = Array.IndexOf(ScopeTypes, cursor);
        }

        List<RankedLimit> rows;
        if (before is not null)
        {
            rows = await ranked.Where(x => x.Rank < cursorRank || (x.Rank == cursorRank && string.Compare(x.Limit.SpendLimitId, before) < 0))
                .OrderByDescending(x => x.Rank).ThenByDescending(x => x.Limit.SpendLimitId).Take(size + 1).ToListAsync(ct);
        }
        else
        {
            var from = after is null ? ranked
                : ranked.Where(x => x.Rank > cursorRank || (x.Rank == cursorRank && string.Compare(x.Limit.SpendLimitId, after) > 0));
            rows = await from.OrderBy(x => x.Rank).ThenBy(x => x.Limit.SpendLimitId).Take(size + 1).ToListAsync(ct);
        }
        var hasMore = rows.Count > size;
        var page = rows.Take(size).Select(x => View(x.Limit)).ToList();
        if (before is not null)
        {
            page.Reverse();
        }
        var firstId = page.Count > 0 ? page[0].Id : null;
        var lastId = page.Count > 0 ? page[^1].Id : null;
        await context.Response.WriteAsJsonAsync(
            new SpendLimitPage(page, hasMore, firstId, lastId, hasMore && before is null ? lastId : null), ct);
    }

    private sealed class RankedLimit
    {
        public required SpendLimitRecord Limit { get; init; }
        public int Rank { get; init; }
    }

    private static Task WriteBadIdAsync(HttpContext context) =>
        ApiErrors.WriteAsync(context, 400, "a spend limit's id is spl_ and 24 lower-case letters or digits");

    private static Task WriteNotFoundAsync(HttpContext context, string id) =>
        ApiErrors.WriteAsync(context, 404, "not_found_error", $"no spend limit '{id}'");
}
