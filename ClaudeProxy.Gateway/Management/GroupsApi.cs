using System.Security.Cryptography;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Data;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// Groups: those named by the identity provider's groups claim (a record gives one a policy or settings; membership
/// needs none) and those made by hand, whose members are devices.
/// </summary>
public static class GroupsApi
{
    private const int MaxName = 128;
    private static readonly string[] Sources = [GroupRecord.FromProvider, GroupRecord.Manual];
    private static readonly string[] Periods = ["day", "week", "month"];

    public static RouteGroupBuilder MapGroupsApi(this RouteGroupBuilder api)
    {
        var groups = api.MapGroup("/groups").WithTags("Groups");
        groups.MapGet("/", List).Produces<PageOf<GroupView>>().WithSummary("List groups, paged, searched by name, with member counts");
        groups.MapGet("/{id}", Get).Produces<GroupView>().WithSummary("One group with its members");
        groups.MapPost("/", Create).Produces<GroupView>(201).WithSummary("Create a group from the provider's claim (idp) or by hand (manual)");
        groups.MapPut("/{id}/policy", UpdatePolicy).Produces<GroupView>().WithSummary("Replace a group's policy");
        groups.MapDelete("/{id}", Delete).WithSummary("Delete a group with its members, managed settings and spend limits");
        groups.MapPost("/{id}/members", AddMember).Produces<GroupView>().WithSummary("Add a device to a manual group");
        groups.MapDelete("/{id}/members/{deviceId}", RemoveMember).WithSummary("Remove a device from a manual group");
        return api;
    }

    private static Task WriteBadIdAsync(HttpContext context) =>
        Errors.ApiErrors.WriteAsync(context, 400, "a group's id is grp_ and 16 lower-case letters or digits");

    private static Task WriteNotFoundAsync(HttpContext context, string id) =>
        Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no group '{id}'");

    private static string NewId()
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        return "grp_" + RandomNumberGenerator.GetString(alphabet, 16);
    }

    internal static string? Validate(GroupPolicy policy)
    {
        if (DevicesApi.Validate(new PolicyUpdate(policy.Models, policy.RateLimit, policy.TokenLimit, null)) is { } error)
        {
            return error;
        }
        if (policy.SpendPeriod is { } period && !Periods.Contains(period))
        {
            return "spend_period must be day, week or month, or null for the organisation's";
        }
        if (policy.TimeZone is { } zone && (zone.Length is 0 or > 64 || !TimeZoneInfo.TryFindSystemTimeZoneById(zone, out _)))
        {
            return "time_zone must be an IANA time zone such as Europe/Paris, or null for UTC";
        }
        return null;
    }

    private static IQueryable<GroupView> Views(GatewayDbContext db, IQueryable<GroupRecord> groups) => groups.Select(g => new GroupView(
        g.GroupId, g.Name, g.Source, g.Models, g.RateLimit, g.TokenLimit, g.SpendPeriod, g.TimeZone, g.PolicyVersion,
        g.Source == GroupRecord.Manual
            ? db.GroupMembers.Count(x => x.GroupId == g.GroupId)
            : db.Users.Count(u => u.Groups.Contains(g.Name)),
        null));

    private static async Task List(HttpContext context, ManagementContext m, string? search = null, int page = 1,
        [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 25)
    {
        if (search is { Length: > MaxName })
        {
            await Errors.ApiErrors.WriteAsync(context, 400, $"search must be at most {MaxName} characters");
            return;
        }
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var query = db.Groups.AsNoTracking().AsQueryable();
        if (!string.IsNullOrWhiteSpace(search))
        {
            var pattern = "%" + search.Trim().Replace("\\", "\\\\").Replace("%", "\\%").Replace("_", "\\_") + "%";
            query = query.Where(g => EF.Functions.ILike(g.Name, pattern, "\\"));
        }
        var total = await query.CountAsync(ct);
        var rows = await Views(db, query.OrderBy(g => g.Name).ThenBy(g => g.GroupId).Skip((page - 1) * pageSize).Take(pageSize)).ToListAsync(ct);
        await context.Response.WriteAsJsonAsync(new PageOf<GroupView>(rows, page, pageSize, total), ct);
    }

    private static async Task<GroupView?> ViewAsync(GatewayDbContext db, string id, CancellationToken ct)
    {
        var view = await Views(db, db.Groups.AsNoTracking().Where(g => g.GroupId == id)).FirstOrDefaultAsync(ct);
        if (view is null)
        {
            return null;
        }
        var members = view.Source == GroupRecord.Manual
            ? await db.GroupMembers.AsNoTracking().Where(x => x.GroupId == id).OrderBy(x => x.DeviceId).Select(x => x.DeviceId).ToListAsync(ct)
            : await db.Users.AsNoTracking().Where(u => u.Groups.Contains(view.Name)).OrderBy(u => u.UserId).Select(u => u.UserId).Take(1000).ToListAsync(ct);
        return view with { Members = members };
    }

    private static async Task Get(string id, HttpContext context, ManagementContext m)
    {
        if (!ManagedSettingsApi.IsGroupId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync(context.RequestAborted);
        if (await ViewAsync(db, id, context.RequestAborted) is not { } view)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        await context.Response.WriteAsJsonAsync(view, context.RequestAborted);
    }

    private static async Task Create(HttpContext context, ManagementContext m)
    {
        if (await UsersApi.ReadBodyAsync<NewGroup>(context) is not { } request)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "the body must be a JSON object with name, source and an optional policy");
            return;
        }
        if (request.Name is not { } name || name.Trim().Length == 0 || name.Length > MaxName || name.Any(char.IsControl))
        {
            await Errors.ApiErrors.WriteAsync(context, 400, $"name must be 1 to {MaxName} characters without control characters");
            return;
        }
        if (request.Source is not { } source || !Sources.Contains(source))
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "source must be idp (members from the provider's groups claim) or manual (devices added by hand)");
            return;
        }
        var policy = request.Policy ?? new GroupPolicy(null, null, null, null, null);
        if (Validate(policy) is { } error)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, error);
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var group = new GroupRecord
        {
            GroupId = NewId(), Name = name, Source = source, Models = policy.Models, RateLimit = policy.RateLimit, TokenLimit = policy.TokenLimit,
            SpendPeriod = policy.SpendPeriod, TimeZone = policy.TimeZone, PolicyVersion = 1,
        };
        db.Groups.Add(group);
        m.Audit(db, context, "group_create", group.GroupId, null, Snapshot(group));
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "invalid_request_error", $"a group named '{name}' exists already");
            return;
        }
        await ChangedAsync(context);
        context.Response.StatusCode = StatusCodes.Status201Created;
        await context.Response.WriteAsJsonAsync(await ViewAsync(db, group.GroupId, ct), ct);
    }

    /// <summary>Every instance admits under the change from now on.</summary>
    private static Task ChangedAsync(HttpContext context) =>
        context.RequestServices.GetRequiredService<Policies.PolicyChanges>().ChangedAsync(context.RequestAborted);

    private static object Snapshot(GroupRecord g) => new
    {
        name = g.Name, source = g.Source, models = g.Models?.ToArray(), rate_limit = g.RateLimit, token_limit = g.TokenLimit,
        spend_period = g.SpendPeriod, time_zone = g.TimeZone, policy_version = g.PolicyVersion,
    };

    private static async Task UpdatePolicy(string id, HttpContext context, ManagementContext m)
    {
        if (!ManagedSettingsApi.IsGroupId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        if (await UsersApi.ReadBodyAsync<GroupPolicy>(context) is not { } policy)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "the body must be a JSON object: models, rate_limit, token_limit, spend_period, time_zone");
            return;
        }
        if (Validate(policy) is { } error)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, error);
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var group = await db.Groups.FirstOrDefaultAsync(g => g.GroupId == id, ct);
        if (group is null)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        var before = Snapshot(group);
        group.Models = policy.Models;
        group.RateLimit = policy.RateLimit;
        group.TokenLimit = policy.TokenLimit;
        group.SpendPeriod = policy.SpendPeriod;
        group.TimeZone = policy.TimeZone;
        group.PolicyVersion++;
        await GroupSpendApi.FollowPeriodAsync(db, id, policy.SpendPeriod, context.RequestServices.GetRequiredService<Limits.LimitOptions>(), ct);
        m.Audit(db, context, "group_policy", id, before, Snapshot(group));
        await db.SaveChangesAsync(ct);
        await ChangedAsync(context);
        await context.Response.WriteAsJsonAsync(await ViewAsync(db, id, ct), ct);
    }

    private static async Task Delete(string id, HttpContext context, ManagementContext m)
    {
        if (!ManagedSettingsApi.IsGroupId(id))
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
            var group = await db.Groups.FirstOrDefaultAsync(g => g.GroupId == id, ct);
            if (group is null)
            {
                return false;
            }
            await db.GroupMembers.Where(x => x.GroupId == id).ExecuteDeleteAsync(ct);
            await db.ManagedSettings.Where(s => s.Scope == id).ExecuteDeleteAsync(ct);
            await db.SpendLimits.Where(s => s.ScopeType == SpendLimitRecord.Group && s.ScopeId == id).ExecuteDeleteAsync(ct);
            db.Groups.Remove(group);
            m.Audit(db, context, "group_delete", id, Snapshot(group), null);
            await db.SaveChangesAsync(ct);
            await transaction.CommitAsync(ct);
            return true;
        });
        if (!found)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        await ChangedAsync(context);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static async Task<GroupRecord?> ManualGroupAsync(GatewayDbContext db, string id, HttpContext context)
    {
        if (!ManagedSettingsApi.IsGroupId(id))
        {
            await WriteBadIdAsync(context);
            return null;
        }
        var group = await db.Groups.AsNoTracking().FirstOrDefaultAsync(g => g.GroupId == id, context.RequestAborted);
        if (group is null)
        {
            await WriteNotFoundAsync(context, id);
            return null;
        }
        if (group.Source != GroupRecord.Manual)
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "invalid_request_error",
                "the members of an idp group come from the provider's groups claim; only manual groups take devices");
            return null;
        }
        return group;
    }

    private static async Task AddMember(string id, HttpContext context, ManagementContext m)
    {
        var ct = context.RequestAborted;
        if (!ManagedSettingsApi.IsGroupId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        if (await UsersApi.ReadBodyAsync<NewGroupMember>(context) is not { DeviceId: { Length: > 0 and <= 256 } deviceId })
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "the body must be a JSON object with device_id");
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (await ManualGroupAsync(db, id, context) is null)
        {
            return;
        }
        if (!await db.Devices.AnyAsync(d => d.DeviceId == deviceId, ct))
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no device '{deviceId}'");
            return;
        }
        if (!await db.GroupMembers.AnyAsync(x => x.GroupId == id && x.DeviceId == deviceId, ct))
        {
            db.GroupMembers.Add(new GroupMember { GroupId = id, DeviceId = deviceId, AddedAt = m.Time.GetUtcNow() });
            m.Audit(db, context, "group_member_add", id, null, new { device_id = deviceId });
            try
            {
                await db.SaveChangesAsync(ct);
            }
            catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
            {
                // Added by a concurrent call: the device is a member, as asked.
            }
            await ChangedAsync(context);
        }
        await context.Response.WriteAsJsonAsync(await ViewAsync(db, id, ct), ct);
    }

    private static async Task RemoveMember(string id, string deviceId, HttpContext context, ManagementContext m)
    {
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (await ManualGroupAsync(db, id, context) is null)
        {
            return;
        }
        var member = await db.GroupMembers.FirstOrDefaultAsync(x => x.GroupId == id && x.DeviceId == deviceId, ct);
        if (member is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"device '{deviceId}' is not in group '{id}'");
            return;
        }
        db.GroupMembers.Remove(member);
        m.Audit(db, context, "group_member_remove", id, new { device_id = deviceId }, null);
        await db.SaveChangesAsync(ct);
        await ChangedAsync(context);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }
}
