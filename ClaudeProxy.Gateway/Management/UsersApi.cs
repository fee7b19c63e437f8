using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Data;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace ClaudeProxy.Gateway.Management;

/// <summary>People who sign in with the company's identity provider: list, detail, deactivate, reactivate.</summary>
public static partial class UsersApi
{
    [GeneratedRegex(@"^usr_[a-z0-9]{16}\z")]
    private static partial Regex UserIdPattern();

    private const int MaxSearch = 320;

    public static bool IsUserId(string? id) => id is not null && UserIdPattern().IsMatch(id);

    public static RouteGroupBuilder MapUsersApi(this RouteGroupBuilder api)
    {
        var users = api.MapGroup("/users").WithTags("Users");
        users.MapGet("/", List).Produces<PageOf<UserView>>();
        users.MapGet("/{id}", Get).Produces<UserView>();
        users.MapPost("/{id}/deactivate", (string id, HttpContext c, ManagementContext m) => SetStatusAsync(id, UserStatus.Deactivated, c, m))
            .Produces<UserView>()
            .WithSummary("Deactivate a person: their tokens stop working on every instance within a second and their refresh tokens are revoked");
        users.MapPost("/{id}/reactivate", (string id, HttpContext c, ManagementContext m) => SetStatusAsync(id, UserStatus.Active, c, m))
            .Produces<UserView>()
            .WithSummary("Reactivate a person: their sign-in record is active again; they sign in anew once their access token expires");
        return api;
    }

    /// <summary>A person's row with what their devices spent this period, composable for sorting and paging.</summary>
    private sealed class UserRow
    {
        public required UserRecord User { get; init; }
        public decimal Spent { get; init; }
    }

    private static IQueryable<UserRow> WithSpend(GatewayDbContext db, IQueryable<UserRecord> users, DateTimeOffset start) => users.Select(u => new UserRow
    {
        User = u,
        Spent = db.UsageRollups.Where(r => r.Granularity == "d" && r.BucketStart >= start &&
                (r.DeviceId == "@" + u.UserId || db.Devices.Any(d => d.DeviceId == r.DeviceId && d.OwnerUserId == u.UserId)))
            .Sum(r => (decimal?)r.CostUsd) ?? 0m,
    });

    [EndpointSummary("List people, paged, sorted, filtered by status and searched by email or name")]
    private static async Task List(HttpContext context, ManagementContext m, string? search = null, string? status = null, string sort = "last_seen",
        string order = "desc", int page = 1, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 25, string? group = null)
    {
        if (!string.IsNullOrWhiteSpace(status) && !UserStatus.All.Contains(status))
        {
            await Errors.ApiErrors.WriteAsync(context, 400, $"status must be one of: {string.Join(", ", UserStatus.All)}");
            return;
        }
        if (search is { Length: > MaxSearch })
        {
            await Errors.ApiErrors.WriteAsync(context, 400, $"search must be at most {MaxSearch} characters");
            return;
        }
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var query = db.Users.AsNoTracking().AsQueryable();
        if (!string.IsNullOrWhiteSpace(search))
        {
            var pattern = "%" + search.Trim().Replace("\\", "\\\\").Replace("%", "\\%").Replace("_", "\\_") + "%";
            query = query.Where(u => EF.Functions.ILike(u.Email!, pattern, "\\") || EF.Functions.ILike(u.Name!, pattern, "\\"));
        }
        if (!string.IsNullOrWhiteSpace(status))
        {
            query = query.Where(u => u.Status == status);
        }
        if (group is { Length: > 128 })
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "group must be at most 128 characters");
            return;
        }
        if (!string.IsNullOrEmpty(group))
        {
            // The people an idp group of this name holds: those whose groups claim names it, exactly.
            query = query.Where(u => u.Groups.Contains(group));
        }
        var rows = WithSpend(db, query, m.PeriodStart());
        var descending = !string.Equals(order, "asc", StringComparison.OrdinalIgnoreCase);
        rows = (sort.ToLowerInvariant(), descending) switch
        {
            ("email", false) => rows.OrderBy(x => x.User.Email).ThenBy(x => x.User.UserId),
            ("email", true) => rows.OrderByDescending(x => x.User.Email).ThenBy(x => x.User.UserId),
            ("name", false) => rows.OrderBy(x => x.User.Name).ThenBy(x => x.User.UserId),
            ("name", true) => rows.OrderByDescending(x => x.User.Name).ThenBy(x => x.User.UserId),
            ("first_seen", false) => rows.OrderBy(x => x.User.FirstSeen).ThenBy(x => x.User.UserId),
            ("first_seen", true) => rows.OrderByDescending(x => x.User.FirstSeen).ThenBy(x => x.User.UserId),
            ("status", false) => rows.OrderBy(x => x.User.Status).ThenBy(x => x.User.UserId),
            ("status", true) => rows.OrderByDescending(x => x.User.Status).ThenBy(x => x.User.UserId),
            ("spend", false) => rows.OrderBy(x => x.Spent).ThenBy(x => x.User.UserId),
            ("spend", true) => rows.OrderByDescending(x => x.Spent).ThenBy(x => x.User.UserId),
            (_, false) => rows.OrderBy(x => x.User.LastSeen).ThenBy(x => x.User.UserId),
            _ => rows.OrderByDescending(x => x.User.LastSeen).ThenBy(x => x.User.UserId),
        };
        var total = await query.CountAsync(ct);
        var found = await rows.Skip((page - 1) * pageSize).Take(pageSize).ToListAsync(ct);
        await context.Response.WriteAsJsonAsync(new PageOf<UserView>(await ViewsAsync(db, m, found, ct), page, pageSize, total), ct);
    }

    [EndpointSummary("One person with their devices and spend this period")]
    private static async Task Get(string id, HttpContext context, ManagementContext m)
    {
        if (!IsUserId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync(context.RequestAborted);
        if (await ViewAsync(db, m, id, context.RequestAborted) is not { } view)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no person '{id}'");
            return;
        }
        await context.Response.WriteAsJsonAsync(view, context.RequestAborted);
    }

    /// <summary>
    /// Sets the person's status and their sign-in record's with it, under a lock on the person's row so that
    /// concurrent calls apply one after the other. Deactivating also revokes every refresh token of theirs. Calling
    /// it again changes nothing and writes no audit entry.
    /// </summary>
    private static async Task SetStatusAsync(string id, string status, HttpContext context, ManagementContext m)
    {
        if (!IsUserId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        var ct = context.RequestAborted;
        var deviceId = UserRecord.DeviceIdOf(id);
        var deviceStatus = status == UserStatus.Active ? DeviceStatus.Active : DeviceStatus.Revoked;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var strategy = db.Database.CreateExecutionStrategy();
        var outcome = await strategy.ExecuteAsync(async () =>
        {
            db.ChangeTracker.Clear();
            await using var transaction = await db.Database.BeginTransactionAsync(ct);
            var user = (await db.Users.FromSql($"SELECT * FROM users WHERE user_id = {id} FOR UPDATE").ToListAsync(ct)).FirstOrDefault();
            if (user is null)
            {
                return (Found: false, DeviceChanged: false);
            }
            var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == deviceId, ct);
            var before = new { status = user.Status, device_status = device?.Status };
            user.Status = status;
            if (device is not null)
            {
                device.Status = deviceStatus;
            }
            var revoked = 0;
            if (status == UserStatus.Deactivated)
            {
                var now = m.Time.GetUtcNow();
                revoked = await db.RefreshTokens.Where(r => r.UserId == id && r.RevokedAt == null)
                    .ExecuteUpdateAsync(s => s.SetProperty(r => r.RevokedAt, now), ct);
            }
            var changed = before.status != user.Status || before.device_status != device?.Status;
            if (changed || revoked > 0)
            {
                m.Audit(db, context, status == UserStatus.Active ? "reactivate" : "deactivate", id, before,
                    new { status = user.Status, device_status = device?.Status, refresh_tokens_revoked = revoked });
            }
            await db.SaveChangesAsync(ct);
            await transaction.CommitAsync(ct);
            return (Found: true, DeviceChanged: device is not null && before.device_status != device.Status);
        });
        if (!outcome.Found)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no person '{id}'");
            return;
        }
        // Announced even when this call changed nothing: a concurrent call's announcement may not have gone out yet.
        await m.Standing.ChangedAsync(deviceId);
        db.ChangeTracker.Clear();
        await context.Response.WriteAsJsonAsync(await ViewAsync(db, m, id, ct), ct);
    }

    private static Task WriteBadIdAsync(HttpContext context) =>
        Errors.ApiErrors.WriteAsync(context, 400, "a person's id is usr_ and 16 lower-case letters or digits");

    private static async Task<UserView?> ViewAsync(GatewayDbContext db, ManagementContext m, string id, CancellationToken ct)
    {
        var row = await WithSpend(db, db.Users.AsNoTracking().Where(u => u.UserId == id), m.PeriodStart()).FirstOrDefaultAsync(ct);
        return row is null ? null : (await ViewsAsync(db, m, [row], ct))[0];
    }

    /// <summary>The people with the devices each owns: those naming them as owner, and their own sign-in record.</summary>
    private static async Task<List<UserView>> ViewsAsync(GatewayDbContext db, ManagementContext m, List<UserRow> rows, CancellationToken ct)
    {
        var ids = rows.Select(r => r.User.UserId).ToList();
        var own = ids.Select(UserRecord.DeviceIdOf).ToList();
        var start = m.PeriodStart();
        var devices = await db.Devices.AsNoTracking()
            .Where(d => (d.OwnerUserId != null && ids.Contains(d.OwnerUserId)) || own.Contains(d.DeviceId))
            .Select(d => new
            {
                d.DeviceId, d.OwnerUserId, d.Status, d.LastSeen,
                Spent = db.UsageRollups.Where(r => r.Granularity == "d" && r.DeviceId == d.DeviceId && r.BucketStart >= start).Sum(r => (decimal?)r.CostUsd) ?? 0m,
            })
            .ToListAsync(ct);
        var byOwner = devices.ToLookup(d => UserRecord.UserIdOf(d.DeviceId) ?? d.OwnerUserId!);
        return
        [
            .. rows.Select(r => new UserView(r.User.UserId, r.User.Email, r.User.Name, r.User.Groups, r.User.Status, r.User.FirstSeen, r.User.LastSeen,
                [.. byOwner[r.User.UserId].OrderBy(d => d.DeviceId, StringComparer.Ordinal).Select(d => new UserDeviceView(d.DeviceId, d.Status, d.LastSeen, d.Spent))],
                r.Spent)),
        ];
    }

    /// <summary>
    /// Reads a JSON body with the management API's naming; null for a body that is missing, not JSON or of the wrong
    /// shape, so the caller answers in Anthropic's error shape instead of the framework's.
    /// </summary>
    internal static async Task<T?> ReadBodyAsync<T>(HttpContext context) where T : class
    {
        var options = context.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;
        try
        {
            return await JsonSerializer.DeserializeAsync<T>(context.Request.Body, options, context.RequestAborted);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
