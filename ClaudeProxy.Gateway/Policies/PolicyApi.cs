using System.Globalization;
using System.Text.Json;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.EntityFrameworkCore;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Policies;

/// <summary>
/// What a person or device may spend and has spent, wherever it is asked: Claude Code's <c>GET /api/oauth/usage</c>
/// (the signed-in person's spend against their binding cap, which <c>/usage</c> shows in dollars) and the operators'
/// effective policy of a person or device, with the rule each part comes from and the cap that binds.
/// Spend comes from the Redis counters admission keeps (reservations of requests in flight included), and from the
/// usage record for a counter Redis does not hold.
/// </summary>
public sealed class PolicyViews(PolicyResolver resolver, GatewayOptions options, ISpendHistory history,
    TimeProvider time, IConnectionMultiplexer? redis = null)
{
    /// <summary>The spend against each cap this period, in micro-dollars.</summary>
    public async Task<long[]> SpentAsync(SpendCap[] caps, CancellationToken cancellationToken)
    {
        var spent = new long[caps.Length];
        var known = new bool[caps.Length];
        if (redis is { IsConnected: true })
        {
            try
            {
                var database = redis.GetDatabase();
                var reads = caps.Select(c => database.HashGetAsync(c.Counter, "s")).ToArray();
                var values = await Task.WhenAll(reads).WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
                for (var i = 0; i < caps.Length; i++)
                {
                    known[i] = values[i].HasValue && values[i].TryParse(out spent[i]);
                }
            }
            catch (Exception e) when (RedisFailures.Is(e) || e is TimeoutException)
            {
                // Read from the record below.
            }
        }
        for (var i = 0; i < caps.Length; i++)
        {
            if (!known[i])
            {
                spent[i] = await history.SpentMicrosAsync(caps[i].Kind, caps[i].Subject, caps[i].PeriodStart, cancellationToken);
            }
        }
        return spent;
    }

    /// <summary>The effective policy of the holder of <paramref name="identity"/>, with its spend this period.</summary>
    public async Task<EffectivePolicyView> ViewAsync(DeviceIdentity identity, CancellationToken cancellationToken)
    {
        var policy = resolver.For(identity);
        var caps = policy.CapsAt(time.GetUtcNow());
        var spent = await SpentAsync(caps, cancellationToken);
        var binding = caps.Length == 0 ? -1 : Admission.Closest(caps, spent, 0);
        var views = caps.Select((c, i) => new SpendCapView(c.Counter, KindName(c.Kind), c.Kind == SpendCapKind.Organization ? null : c.Subject, c.Name,
            c.CapMicros / 1_000_000m, spent[i] / 1_000_000m, SpendPeriods.ApiName(c.Period), c.TimeZone, c.PeriodStart, c.PeriodEnd, c.LimitId, i == binding)).ToList();
        string? reason = null;
        if (binding >= 0)
        {
            var cap = caps[binding];
            var share = SpendLimitHeaders.Utilization(cap, spent[binding]);
            reason = caps.Length == 1
                ? $"{Refusals.Capitalised(cap.Name)} is the only spend cap that applies ({share:P0} used)."
                : $"Of the {caps.Length} spend caps that apply, {cap.Name} has the least left for its size ({share:P0} used, " +
                  $"{Math.Max(0, cap.CapMicros - spent[binding]) / 1_000_000m:0.00} USD left); each request must fit under every cap.";
        }
        return new EffectivePolicyView(identity.DeviceId, identity.IsPerson ? identity.UserId : null,
            [.. policy.Groups.Select(g => new GroupRef(g.GroupId, g.Name))],
            [.. policy.Groups.FirstOrDefault(g => g.Models is not null)?.Models?.Patterns ?? identity.Models.Patterns], policy.ModelsFrom,
            policy.RateLimit, policy.RateLimitFrom, policy.TokenLimit, policy.TokenLimitFrom, views,
            binding >= 0 ? caps[binding].Counter : null, reason);
    }

    /// <summary>
    /// The identity a person's or device's requests carry, from their records as a token issued now would: the
    /// person's sign-in record (their groups as last seen), or the device's.
    /// </summary>
    public DeviceIdentity IdentityOf(DeviceRecord device, UserRecord? user) => new()
    {
        DeviceId = device.DeviceId,
        UserId = user?.UserId ?? device.UserId,
        OrgId = device.OrgId,
        Models = new ModelAllowlist(device.Models.Count > 0 ? device.Models : [.. options.DefaultModels]),
        RateLimit = device.RateLimit > 0 ? device.RateLimit : options.RateLimitMax,
        TokenLimit = device.TokenLimit,
        SpendCap = device.SpendCap,
        PolicyVersion = device.PolicyVersion,
        Email = user?.Email,
        Groups = user?.Groups,
        TokenId = "",
    };

    /// <summary>Claude Code's <c>GET /api/oauth/usage</c>: the caller's spend against its binding cap; 404 without a cap.</summary>
    public async Task UsageAsync(HttpContext context, DeviceAuthenticator authenticator)
    {
        var identity = await authenticator.AuthenticateTokenAsync(context);
        if (identity is null)
        {
            return;
        }
        context.Response.Headers.CacheControl = "no-store";
        var policy = resolver.For(identity);
        var caps = policy.CapsAt(time.GetUtcNow());
        if (caps.Length == 0)
        {
            await ApiErrors.WriteAsync(context, 404, "not_found_error", "no spend limit applies to you");
            return;
        }
        long[] spent;
        try
        {
            spent = await SpentAsync(caps, context.RequestAborted);
        }
        catch (Exception e) when (!context.RequestAborted.IsCancellationRequested && e is not OperationCanceledException)
        {
            await ApiErrors.WriteAsync(context, 503, "api_error", "your spend cannot be read right now; retry shortly");
            return;
        }
        var binding = Admission.Closest(caps, spent, 0);
        var cap = caps[binding];
        var used = Math.Max(0, spent[binding]);
        var percent = Math.Round(SpendLimitHeaders.Utilization(cap, used) * 100, 1);
        await using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        context.Response.ContentType = "application/json";
        json.WriteStartObject();
        json.WriteStartObject("extra_usage");
        json.WriteBoolean("is_enabled", true);
        json.WriteNumber("monthly_limit", Cents(cap.CapMicros));
        json.WriteNumber("used_credits", Cents(used));
        json.WriteNumber("utilization", percent);
        json.WriteString("currency", "USD");
        json.WriteEndObject();
        json.WriteStartArray("limits");
        for (var i = 0; i < caps.Length; i++)
        {
            var share = SpendLimitHeaders.Utilization(caps[i], spent[i]);
            json.WriteStartObject();
            json.WriteString("kind", "spend");
            json.WriteString("group", SpendPeriods.ApiName(caps[i].Period));
            json.WriteString("name", caps[i].Name);
            json.WriteNumber("percent", Math.Round(share * 100, 1));
            json.WriteString("resets_at", caps[i].PeriodEnd.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
            json.WriteString("severity", share >= 1 ? "error" : share >= 0.75 ? "warning" : "normal");
            json.WriteBoolean("is_active", i == binding);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }

    /// <summary>The operators' view of a person's effective policy; 404 for no such person.</summary>
    public async Task UserPolicyAsync(string id, HttpContext context, IDbContextFactory<GatewayDbContext> contexts)
    {
        if (!Management.UsersApi.IsUserId(id))
        {
            await ApiErrors.WriteAsync(context, 400, "invalid_request_error", "a user id is usr_ and 16 lower-case letters and digits");
            return;
        }
        if (await PersonAsync(id, context, contexts) is { } person)
        {
            await context.Response.WriteAsJsonAsync(await ViewAsync(person, context.RequestAborted), context.RequestAborted);
        }
    }

    /// <summary>The identity a person's requests carry, from their records; null (and a 404 written) for no such person.</summary>
    private async Task<DeviceIdentity?> PersonAsync(string id, HttpContext context, IDbContextFactory<GatewayDbContext> contexts)
    {
        await using var db = await contexts.CreateDbContextAsync(context.RequestAborted);
        var user = await db.Users.AsNoTracking().SingleOrDefaultAsync(u => u.UserId == id, context.RequestAborted);
        if (user is null)
        {
            await ApiErrors.WriteAsync(context, 404, "not_found_error", $"no person '{id}'");
            return null;
        }
        var deviceId = UserRecord.DeviceIdOf(id);
        var device = await db.Devices.AsNoTracking().SingleOrDefaultAsync(d => d.DeviceId == deviceId, context.RequestAborted)
            // Not signed in yet: the default policy a first sign-in gives.
            ?? new DeviceRecord { DeviceId = deviceId, UserId = id, OrgId = options.OrgId, Status = DeviceStanding.Active, Models = [] };
        return IdentityOf(device, user);
    }

    /// <summary>
    /// <c>GET /v1/organizations/spend_limits/effective?user_id=</c>: the limits that apply to a person, each with its
    /// spend this period, in the spend-limits API's shape; the top level is the one that binds.
    /// </summary>
    public async Task EffectiveLimitsAsync(HttpContext context, IDbContextFactory<GatewayDbContext> contexts)
    {
        var userId = context.Request.Query["user_id"];
        if (userId.Count != 1 || !Management.UsersApi.IsUserId(userId[0]))
        {
            await ApiErrors.WriteAsync(context, 400, "invalid_request_error", "user_id is required once: usr_ and 16 lower-case letters and digits");
            return;
        }
        var id = userId[0]!;
        if (await PersonAsync(id, context, contexts) is not { } person)
        {
            return;
        }
        var view = await ViewAsync(person, context.RequestAborted);
        await using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        context.Response.ContentType = "application/json";
        json.WriteStartObject();
        json.WriteString("type", "effective_spend_limit");
        json.WriteString("user_id", id);
        var binding = view.Caps.FirstOrDefault(c => c.Binding);
        json.WritePropertyName("binding");
        if (binding is null)
        {
            json.WriteNullValue();
        }
        else
        {
            WriteLimit(json, binding, id);
        }
        json.WriteString("binding_reason", view.BindingReason);
        json.WriteStartArray("data");
        foreach (var cap in view.Caps)
        {
            WriteLimit(json, cap, id);
        }
        json.WriteEndArray();
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }

    private static void WriteLimit(Utf8JsonWriter json, SpendCapView cap, string userId)
    {
        json.WriteStartObject();
        json.WriteString("type", "spend_limit");
        json.WriteString("id", cap.SpendLimitId);
        json.WriteStartObject("scope");
        switch (cap.Kind)
        {
            case "group_member" or "group_pool":
                json.WriteString("type", "rbac_group");
                json.WriteString("rbac_group_id", cap.ScopeId);
                break;
            case "organization":
                json.WriteString("type", "organization");
                break;
            default:
                json.WriteString("type", "user");
                json.WriteString("user_id", userId);
                break;
        }
        json.WriteEndObject();
        if (cap.Kind is "group_member" or "group_pool")
        {
            json.WriteBoolean("pooled_budget", cap.Kind == "group_pool");
        }
        json.WriteString("source", cap.Kind);
        json.WriteString("name", cap.Name);
        json.WriteString("amount", Cents(cap.CapUsd).ToString(CultureInfo.InvariantCulture));
        json.WriteString("spent", Cents(cap.SpentUsd).ToString(CultureInfo.InvariantCulture));
        json.WriteString("currency", "USD");
        json.WriteString("period", cap.Period);
        json.WriteString("time_zone", cap.TimeZone);
        json.WriteString("period_start", cap.PeriodStart);
        json.WriteString("resets_at", cap.ResetsAt);
        json.WriteEndObject();
    }

    private static long Cents(decimal usd) => (long)Math.Floor(usd * 100);

    /// <summary>The operators' view of a device's effective policy; 404 for no such device.</summary>
    public async Task DevicePolicyAsync(string id, HttpContext context, IDbContextFactory<GatewayDbContext> contexts)
    {
        await using var db = await contexts.CreateDbContextAsync(context.RequestAborted);
        var device = id.Length <= 128 ? await db.Devices.AsNoTracking().SingleOrDefaultAsync(d => d.DeviceId == id, context.RequestAborted) : null;
        if (device is null)
        {
            await ApiErrors.WriteAsync(context, 404, "not_found_error", "no such device");
            return;
        }
        var user = device.DeviceId.StartsWith('@')
            ? await db.Users.AsNoTracking().SingleOrDefaultAsync(u => u.UserId == device.UserId, context.RequestAborted)
            : null;
        await context.Response.WriteAsJsonAsync(await ViewAsync(IdentityOf(device, user), context.RequestAborted), context.RequestAborted);
    }

    private static long Cents(long micros) => (long)Math.Floor(micros / 10_000m);

    private static string KindName(SpendCapKind kind) => kind switch
    {
        SpendCapKind.Device => "device",
        SpendCapKind.User => "user",
        SpendCapKind.GroupMember => "group_member",
        SpendCapKind.GroupPool => "group_pool",
        _ => "organization",
    };
}

public static class PolicyApiExtensions
{
    /// <summary>Claude Code's <c>GET /api/oauth/usage</c> on the proxy port.</summary>
    public static IEndpointRouteBuilder MapUsageLimitsApi(this IEndpointRouteBuilder app)
    {
        var views = app.ServiceProvider.GetRequiredService<PolicyViews>();
        var authenticator = app.ServiceProvider.GetRequiredService<DeviceAuthenticator>();
        app.MapGet("/api/oauth/usage", ctx => views.UsageAsync(ctx, authenticator));
        return app;
    }

    /// <summary>The effective policy of a person or a device under <c>/manage/v1</c>.</summary>
    public static RouteGroupBuilder MapPolicyApi(this RouteGroupBuilder api)
    {
        api.MapGet("/users/{id}/policy", (string id, HttpContext ctx, PolicyViews views, IDbContextFactory<GatewayDbContext> contexts) =>
            views.UserPolicyAsync(id, ctx, contexts)).Produces<EffectivePolicyView>().WithTags("Users")
            .WithSummary("A person's effective policy: the most restrictive of theirs, their groups' and the organisation's, and the cap that binds");
        api.MapGet("/devices/{id}/policy", (string id, HttpContext ctx, PolicyViews views, IDbContextFactory<GatewayDbContext> contexts) =>
            views.DevicePolicyAsync(id, ctx, contexts)).Produces<EffectivePolicyView>().WithTags("Devices")
            .WithSummary("A device's effective policy: the most restrictive of its own, its groups' and the organisation's, and the cap that binds");
        return api;
    }

    /// <summary><c>GET /v1/organizations/spend_limits/effective?user_id=</c> beside the spend-limits API.</summary>
    public static RouteGroupBuilder MapEffectiveSpendLimits(this RouteGroupBuilder organizations)
    {
        organizations.MapGet("/spend_limits/effective", (HttpContext ctx, PolicyViews views, IDbContextFactory<GatewayDbContext> contexts) =>
            views.EffectiveLimitsAsync(ctx, contexts)).WithTags("Spend limits")
            .WithSummary("The spend limits that apply to a person (user_id), each with its spend this period; binding is the one closest to its limit");
        return organizations;
    }
}
