using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.Management;

/// <summary>Devices: list, detail, register, approve, revoke, restore, edit policy, issue a token, audit trail.</summary>
public static partial class DevicesApi
{
    [GeneratedRegex(@"^[A-Za-z0-9._:*?-]{1,100}\z")]
    private static partial Regex ModelGlob();

    [GeneratedRegex(@"^[A-Za-z0-9._:-]{1,128}\z")]
    private static partial Regex DeviceIdPattern();

    /// <summary>The standing changes: the action (route and audit name), the status it sets, the status it needs first (any when null).</summary>
    private static readonly (string Action, string To, string? From, string Summary)[] Transitions =
    [
        ("approve", DeviceStatus.Active, DeviceStatus.Pending, "Approve a pending device"),
        ("revoke", DeviceStatus.Revoked, null, "Revoke a device: its tokens stop working on every instance within a second"),
        ("restore", DeviceStatus.Active, DeviceStatus.Revoked,
            "Restore a revoked device; tokens issued before the revocation stay refused (the policy version moves on)"),
    ];

    public static RouteGroupBuilder MapDevicesApi(this RouteGroupBuilder api)
    {
        var devices = api.MapGroup("/devices").WithTags("Devices");
        devices.MapGet("/", List);
        devices.MapPost("/", Register);
        devices.MapGet("/{id}", Get);
        foreach (var (action, to, from, summary) in Transitions)
        {
            devices.MapPost("/{id}/" + action, (string id, HttpContext c, ManagementContext m) => SetStatus(id, to, action, c, m, from)).WithSummary(summary);
        }
        devices.MapPut("/{id}/policy", UpdatePolicy);
        devices.MapPut("/{id}/owner", UpdateOwner);
        devices.MapPost("/{id}/reset-key", ResetKey);
        devices.MapPost("/{id}/token", IssueToken);
        devices.MapGet("/{id}/audit", Audit);
        api.MapGet("/audit", AllAudit).WithTags("Audit");
        return api;
    }

    [EndpointSummary("List devices, paged, sorted and searched")]
    private static async Task<Ok<PageOf<DeviceView>>> List(ManagementContext m, string? search = null, string? status = null, string sort = "last_seen",
        string order = "desc", int page = 1, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 25)
    {
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        await using var db = await m.Contexts.CreateDbContextAsync();
        var periodStart = m.PeriodStart();
        var query = db.Devices.AsNoTracking().AsQueryable();
        if (!string.IsNullOrWhiteSpace(search))
        {
            var pattern = "%" + search.Trim().Replace("\\", "\\\\").Replace("%", "\\%").Replace("_", "\\_") + "%";
            query = query.Where(d => EF.Functions.ILike(d.DeviceId, pattern) || EF.Functions.ILike(d.UserId, pattern));
        }
        if (!string.IsNullOrWhiteSpace(status))
        {
            query = query.Where(d => d.Status == status);
        }
        var withSpend = query.Select(d => new
        {
            Device = d,
            Spent = db.UsageRollups.Where(r => r.Granularity == "d" && r.DeviceId == d.DeviceId && r.BucketStart >= periodStart).Sum(r => (decimal?)r.CostUsd) ?? 0m,
        });
        var descending = !string.Equals(order, "asc", StringComparison.OrdinalIgnoreCase);
        withSpend = (sort.ToLowerInvariant(), descending) switch
        {
            ("device_id", false) => withSpend.OrderBy(x => x.Device.DeviceId),
            ("device_id", true) => withSpend.OrderByDescending(x => x.Device.DeviceId),
            ("first_seen", false) => withSpend.OrderBy(x => x.Device.FirstSeen),
            ("first_seen", true) => withSpend.OrderByDescending(x => x.Device.FirstSeen),
            ("status", false) => withSpend.OrderBy(x => x.Device.Status).ThenBy(x => x.Device.DeviceId),
            ("status", true) => withSpend.OrderByDescending(x => x.Device.Status).ThenBy(x => x.Device.DeviceId),
            ("spend", false) => withSpend.OrderBy(x => x.Spent).ThenBy(x => x.Device.DeviceId),
            ("spend", true) => withSpend.OrderByDescending(x => x.Spent).ThenBy(x => x.Device.DeviceId),
            ("user_id", false) => withSpend.OrderBy(x => x.Device.UserId),
            ("user_id", true) => withSpend.OrderByDescending(x => x.Device.UserId),
            (_, false) => withSpend.OrderBy(x => x.Device.LastSeen),
            _ => withSpend.OrderByDescending(x => x.Device.LastSeen),
        };
        var total = await query.CountAsync();
        var rows = await withSpend.Skip((page - 1) * pageSize).Take(pageSize).ToListAsync();
        return TypedResults.Ok(new PageOf<DeviceView>([.. rows.Select(r => View(r.Device, r.Spent))], page, pageSize, total));
    }

    [EndpointSummary("One device with its spend this period")]
    private static async Task Get(string id, HttpContext context, ManagementContext m)
    {
        await using var db = await m.Contexts.CreateDbContextAsync();
        var device = await db.Devices.AsNoTracking().FirstOrDefaultAsync(d => d.DeviceId == id);
        if (device is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no device '{id}'");
            return;
        }
        await context.Response.WriteAsJsonAsync(View(device, await m.SpentAsync(db, id)));
    }

    [EndpointSummary("Register a device by hand (for closed bootstrap mode)")]
    private static async Task Register(NewDevice request, HttpContext context, ManagementContext m, ConfiguredDeviceDirectory defaults)
    {
        if (request.DeviceId is null || !DeviceIdPattern().IsMatch(request.DeviceId))
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "device_id is required: 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'");
            return;
        }
        var policy = defaults.DefaultPolicy;
        var update = new PolicyUpdate(request.Models ?? [.. policy.Models], request.RateLimit ?? policy.RateLimit, request.TokenLimit ?? policy.TokenLimit,
            request.SpendCap ?? policy.SpendCap);
        if (Validate(update) is { } error)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, error);
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync();
        if (await OwnerErrorAsync(db, request.OwnerUserId) is { } ownerError)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, ownerError);
            return;
        }
        if (await db.Devices.AnyAsync(d => d.DeviceId == request.DeviceId))
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "conflict_error", $"device '{request.DeviceId}' already exists");
            return;
        }
        var now = m.Time.GetUtcNow();
        var device = new DeviceRecord
        {
            DeviceId = request.DeviceId, UserId = request.UserId ?? request.DeviceId, OrgId = m.Options.OrgId, Status = DeviceStatus.Active,
            Models = update.Models!, RateLimit = update.RateLimit!.Value, TokenLimit = update.TokenLimit, SpendCap = update.SpendCap,
            PolicyVersion = 1, FirstSeen = now, LastSeen = now, OwnerUserId = request.OwnerUserId,
        };
        db.Devices.Add(device);
        m.Audit(db, context, "register", device.DeviceId, null, device);
        await db.SaveChangesAsync();
        await m.Standing.ChangedAsync(device.DeviceId);
        context.Response.StatusCode = 201;
        await context.Response.WriteAsJsonAsync(View(device, 0));
    }

    private static async Task SetStatus(string id, string status, string action, HttpContext context, ManagementContext m, string? requiredCurrent = null)
    {
        await using var db = await m.Contexts.CreateDbContextAsync();
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == id);
        if (device is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no device '{id}'");
            return;
        }
        if (requiredCurrent is not null && device.Status != requiredCurrent)
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "conflict_error", $"device '{id}' is {device.Status}, not {requiredCurrent}");
            return;
        }
        var before = Snapshot(device);
        device.Status = status;
        if (requiredCurrent == DeviceStatus.Revoked)
        {
            // Tokens issued before the revocation stay dead: the device refreshes for a token of the new version.
            device.PolicyVersion++;
        }
        m.Audit(db, context, action, id, before, device);
        await db.SaveChangesAsync();
        await m.Standing.ChangedAsync(id);
        await context.Response.WriteAsJsonAsync(View(device, await m.SpentAsync(db, id)));
    }

    [EndpointSummary("Edit models, rate limit, token budget and spend cap; older tokens must refresh")]
    private static async Task UpdatePolicy(string id, PolicyUpdate update, HttpContext context, ManagementContext m)
    {
        if (Validate(update) is { } error)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, error);
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync();
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == id);
        if (device is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no device '{id}'");
            return;
        }
        var before = Snapshot(device);
        device.Models = update.Models ?? device.Models;
        device.RateLimit = update.RateLimit ?? device.RateLimit;
        device.TokenLimit = update.TokenLimit;
        device.SpendCap = update.SpendCap;
        device.PolicyVersion++;
        m.Audit(db, context, "policy", id, before, device);
        await db.SaveChangesAsync();
        await m.Standing.ChangedAsync(id);
        await context.Response.WriteAsJsonAsync(View(device, await m.SpentAsync(db, id)));
    }

    [EndpointSummary("Give the device to a person (owner_user_id), or to nobody (null)")]
    private static async Task UpdateOwner(string id, HttpContext context, ManagementContext m)
    {
        if (await UsersApi.ReadBodyAsync<DeviceOwnerUpdate>(context) is not { } update)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "the body must be a JSON object such as {\"owner_user_id\":\"usr_...\"} or {\"owner_user_id\":null}");
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync();
        if (await OwnerErrorAsync(db, update.OwnerUserId) is { } error)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, error);
            return;
        }
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == id);
        if (device is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no device '{id}'");
            return;
        }
        if (UserRecord.UserIdOf(id) is not null)
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "conflict_error", $"device '{id}' is a person's own sign-in record: it always belongs to them");
            return;
        }
        var before = new { owner_user_id = device.OwnerUserId };
        device.OwnerUserId = update.OwnerUserId;
        m.Audit(db, context, "owner", id, before, new { owner_user_id = device.OwnerUserId });
        await db.SaveChangesAsync();
        await context.Response.WriteAsJsonAsync(View(device, await m.SpentAsync(db, id)));
    }

    /// <summary>Why <paramref name="ownerUserId"/> cannot own a device, or null when it names a person the gateway knows (or is null).</summary>
    private static async Task<string?> OwnerErrorAsync(GatewayDbContext db, string? ownerUserId)
    {
        if (ownerUserId is null)
        {
            return null;
        }
        if (!UsersApi.IsUserId(ownerUserId))
        {
            return "owner_user_id must be a person's id: usr_ and 16 lower-case letters or digits";
        }
        return await db.Users.AnyAsync(u => u.UserId == ownerUserId) ? null : $"owner_user_id '{ownerUserId}' names no person the gateway knows";
    }

    [EndpointSummary("Forget the device's enrolled key so that it can enrol a new one; its tokens must refresh")]
    private static async Task ResetKey(string id, HttpContext context, ManagementContext m)
    {
        await using var db = await m.Contexts.CreateDbContextAsync();
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == id);
        if (device is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no device '{id}'");
            return;
        }
        if (device.PublicKey is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "conflict_error", $"device '{id}' has no enrolled key");
            return;
        }
        var before = new
        {
            key_algorithm = device.KeyAlgorithm, key_fingerprint = new DeviceKey(device.PublicKey, device.KeyAlgorithm ?? DeviceKeys.P256).Fingerprint,
            key_enrolled_at = device.KeyEnrolledAt, policy_version = device.PolicyVersion,
        };
        (device.PublicKey, device.KeyAlgorithm, device.KeyEnrolledAt) = (null, null, null);
        // Tokens issued under the old key must come back through /refresh, which a device with no key passes only
        // as DEVICE_KEYS allows.
        device.PolicyVersion++;
        m.Audit(db, context, "reset_key", id, before, new { key_algorithm = (string?)null, policy_version = device.PolicyVersion });
        await db.SaveChangesAsync();
        await m.Standing.ChangedAsync(id);
        await context.Response.WriteAsJsonAsync(View(device, await m.SpentAsync(db, id)));
    }

    [EndpointSummary("Issue a wrapper token for a device by hand")]
    private static async Task IssueToken(string id, HttpContext context, ManagementContext m, TokenService tokens)
    {
        await using var db = await m.Contexts.CreateDbContextAsync();
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == id);
        if (device is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no device '{id}'");
            return;
        }
        if (device.Status != DeviceStatus.Active)
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "conflict_error", $"device '{id}' is {device.Status}: only an active device gets a token");
            return;
        }
        var issued = tokens.Issue(device.DeviceId, device.UserId, device.OrgId,
            new DevicePolicy(device.Models, device.RateLimit, device.TokenLimit, device.SpendCap, device.PolicyVersion));
        m.Audit(db, context, "issue_token", id, null, new { expires_at = issued.ExpiresAt });
        await db.SaveChangesAsync();
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.WriteAsJsonAsync(new IssuedTokenView(issued.Token, issued.ExpiresAt));
    }

    [EndpointSummary("The device's audit trail")]
    private static async Task<Ok<PageOf<AuditView>>> Audit(string id, ManagementContext m, int page = 1, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 50) =>
        TypedResults.Ok(await AuditPage(m, id, page, pageSize));

    [EndpointSummary("Every recorded change, newest first")]
    private static async Task<Ok<PageOf<AuditView>>> AllAudit(ManagementContext m, int page = 1, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 50) =>
        TypedResults.Ok(await AuditPage(m, null, page, pageSize));

    private static async Task<PageOf<AuditView>> AuditPage(ManagementContext m, string? target, int page, int pageSize)
    {
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        await using var db = await m.Contexts.CreateDbContextAsync();
        var query = db.Audit.AsNoTracking().Where(a => target == null || a.Target == target);
        var total = await query.CountAsync();
        var rows = await query.OrderByDescending(a => a.Id).Skip((page - 1) * pageSize).Take(pageSize)
            .Select(a => new AuditView(a.Id, a.Time, a.Actor, a.Action, a.Target, a.Before, a.After)).ToListAsync();
        return new PageOf<AuditView>(rows, page, pageSize, total);
    }

    internal static string? Validate(PolicyUpdate update)
    {
        if (update.Models is { } models && (models.Count == 0 || models.Count > 50 || models.Any(g => g is null || !ModelGlob().IsMatch(g))))
        {
            return "models must be 1 to 50 model names or globs such as claude-sonnet-*";
        }
        if (update.RateLimit is < 1 or > 1_000_000)
        {
            return "rate_limit must be from 1 to 1000000 requests per window";
        }
        if (update.TokenLimit is < 1 or > 1_000_000_000)
        {
            return "token_limit must be from 1 to 1000000000 tokens per minute, or null for none";
        }
        if (update.SpendCap is < 0 or > 10_000_000)
        {
            return "spend_cap must be from 0 to 10000000 USD (0 refuses every request), or null for no cap";
        }
        return null;
    }

    internal static object Snapshot(DeviceRecord d) => new
    {
        status = d.Status, models = d.Models.ToArray(), rate_limit = d.RateLimit, token_limit = d.TokenLimit, spend_cap = d.SpendCap,
        policy_version = d.PolicyVersion,
    };

    internal static DeviceView View(DeviceRecord d, decimal spent) => new(d.DeviceId, d.AppVersion, d.UserId, d.OrgId, d.Status, d.Models, d.RateLimit,
        d.TokenLimit, d.SpendCap, d.PolicyVersion, d.FirstSeen, d.LastSeen, spent,
        d.KeyAlgorithm, d.KeyEnrolledAt, d.PublicKey is null ? null : new DeviceKey(d.PublicKey, d.KeyAlgorithm ?? DeviceKeys.P256).Fingerprint, d.OwnerUserId);
}

/// <summary>What every management endpoint needs: the database, the clock, the spend period, the audit trail.</summary>
public sealed class ManagementContext(IDbContextFactory<GatewayDbContext> contexts, DeviceStandingCache standing, GatewayOptions options,
    LimitOptions limits, TimeProvider time)
{
    public IDbContextFactory<GatewayDbContext> Contexts => contexts;
    public DeviceStandingCache Standing => standing;
    public GatewayOptions Options => options;
    public TimeProvider Time => time;

    public DateTimeOffset PeriodStart() => SpendPeriods.Of(limits.SpendPeriod, time.GetUtcNow()).Start;

    public async Task<decimal> SpentAsync(GatewayDbContext db, string deviceId)
    {
        var start = PeriodStart();
        return await db.UsageRollups.Where(r => r.Granularity == "d" && r.DeviceId == deviceId && r.BucketStart >= start).SumAsync(r => (decimal?)r.CostUsd) ?? 0m;
    }

    /// <summary>Records a write; the operator's name comes from the admin app's <c>x-operator</c> header.</summary>
    public void Audit(GatewayDbContext db, HttpContext context, string action, string target, object? before, object? after)
    {
        var actor = context.Request.Headers["x-operator"].ToString() is { Length: > 0 and <= 128 } name ? name : "api";
        var entry = new AuditEntry
        {
            Time = time.GetUtcNow(), Actor = actor, Action = action, Target = target,
            Before = before is null ? null : JsonSerializer.Serialize(before is DeviceRecord b ? DevicesApi.Snapshot(b) : before),
            After = after is null ? null : JsonSerializer.Serialize(after is DeviceRecord a ? DevicesApi.Snapshot(a) : after),
        };
        db.Audit.Add(entry);
        if (context.RequestServices.GetService<Events.GatewayEvents>() is { } events)
        {
            // The write's event goes out once the entry is stored with it; an entry cleared for a retry is not.
            EventHandler<Microsoft.EntityFrameworkCore.SavedChangesEventArgs>? saved = null;
            saved = (_, _) =>
            {
                if (db.Entry(entry).State == EntityState.Unchanged)
                {
                    db.SavedChanges -= saved;
                    events.RaiseForAudit(action, target, actor);
                }
            };
            db.SavedChanges += saved;
        }
    }
}
