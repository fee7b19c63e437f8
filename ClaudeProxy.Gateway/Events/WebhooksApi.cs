using System.Security.Cryptography;
using System.Text.Json;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Management;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// Webhooks: endpoints that receive the gateway's events (signed per Standard Webhooks, or as Slack messages), their
/// delivery log with resend, a test send, and the stored events themselves.
/// </summary>
public static class WebhooksApi
{
    private const int MaxUrl = 2048;
    private const int MaxDescription = 512;
    private const int MaxEvents = 64;
    private const int MaxBody = 64 * 1024;
    private static readonly string[] Formats = [WebhookEndpoint.Json, WebhookEndpoint.Slack];

    public static RouteGroupBuilder MapWebhooksApi(this RouteGroupBuilder api)
    {
        var webhooks = api.MapGroup("/webhooks").WithTags("Webhooks");
        webhooks.MapGet("/", List).Produces<PageOf<WebhookView>>().WithSummary("List webhook endpoints, newest first (secrets masked)");
        webhooks.MapPost("/", Create).Produces<WebhookView>(201).WithSummary("Create a webhook endpoint; the answer holds its secret, in full, once");
        webhooks.MapGet("/{id}", Get).Produces<WebhookView>().WithSummary("One webhook endpoint (secret masked)");
        webhooks.MapPut("/{id}", Update).Produces<WebhookView>().WithSummary("Change a webhook's url, events, format, description or enabled; what is left out stays");
        webhooks.MapDelete("/{id}", Delete).WithSummary("Delete a webhook endpoint and its delivery log");
        webhooks.MapPost("/{id}/test", Test).Produces<WebhookSendResult>(202).WithSummary("Send a webhook.test event to this endpoint");
        webhooks.MapGet("/{id}/deliveries", Deliveries).Produces<PageOf<WebhookDeliveryView>>().WithSummary("The endpoint's deliveries, newest first, with their outcome");
        webhooks.MapPost("/deliveries/{deliveryId}/resend", Resend).Produces<WebhookSendResult>(202).WithSummary("Send a delivery again, with the same event id");
        api.MapGet("/events", ListEvents).WithTags("Webhooks").Produces<PageOf<GatewayEventView>>().WithSummary("Stored events, newest first, filtered by type");
        return api;
    }

    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

    internal static bool IsWebhookId(string? id) =>
        id is { Length: 19 } && id.StartsWith("wh_", StringComparison.Ordinal) && id.AsSpan(3).IndexOfAnyExcept(GatewayEvent.IdCharacters) < 0;

    private static Task WriteBadIdAsync(HttpContext context) => ApiErrors.WriteAsync(context, 400, "a webhook's id is wh_ and 16 lower-case letters or digits");

    private static Task WriteNotFoundAsync(HttpContext context, string id) => ApiErrors.WriteAsync(context, 404, "not_found_error", $"no webhook '{id}'");

    internal static WebhookView View(WebhookEndpoint w, bool withSecret = false) => new(w.WebhookId, w.Url, w.Events, w.Format, w.Description, w.Enabled,
        withSecret ? w.Secret : WebhookSignature.Mask(w.Secret), w.CreatedAt, w.UpdatedAt);

    private static object Snapshot(WebhookEndpoint w) => new { url = w.Url, events = w.Events.ToArray(), format = w.Format, description = w.Description, enabled = w.Enabled };

    /// <summary>Why a url cannot be a webhook's, or null: absolute http or https, a host, no credentials in it.</summary>
    internal static string? UrlError(string? url)
    {
        if (url is null || url.Length == 0 || url.Length > MaxUrl || url.Any(c => char.IsControl(c) || char.IsWhiteSpace(c)))
        {
            return $"url must be an absolute http or https URL of at most {MaxUrl} characters, without spaces";
        }
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) ||
            string.IsNullOrEmpty(uri.Host))
        {
            return "url must be an absolute http or https URL such as https://hooks.example.com/claudeproxy";
        }
        if (uri.UserInfo.Length > 0)
        {
            return "url must not carry credentials (user:password@): the deliveries are signed with the webhook's secret instead";
        }
        return null;
    }

    internal static string? EventsError(List<string>? events)
    {
        if (events is null || events.Count == 0 || events.Count > MaxEvents)
        {
            return $"events must be a list of event types ({string.Join(", ", EventTypes.All)}), or [\"*\"] for all";
        }
        foreach (var type in events)
        {
            if (type is null || (type != EventTypes.Any && !EventTypes.IsKnown(type)))
            {
                var shown = type is null ? "null" : type.Length > 64 ? type[..64] + "…" : type;
                return $"unknown event type '{shown}': the types are {string.Join(", ", EventTypes.All)}, or * for all";
            }
        }
        return null;
    }

    private static string? DescriptionError(string? description) =>
        description is { } d && (d.Length > MaxDescription || d.Any(char.IsControl)) ? $"description must be at most {MaxDescription} characters without control characters" : null;

    private static string? FormatError(string? format) =>
        format is not null && !Formats.Contains(format) ? "format must be json (the event, signed) or slack (a Slack incoming webhook's {\"text\": …})" : null;

    /// <summary>The body as <typeparamref name="T"/>, at most 64 KB; null (with the 400 or 413 written) when it is not one.</summary>
    private static async Task<T?> ReadAsync<T>(HttpContext context, string shape) where T : class
    {
        if (context.Request.ContentLength > MaxBody)
        {
            await ApiErrors.WriteAsync(context, 413, "request_too_large", $"the body must be at most {MaxBody / 1024} KB");
            return null;
        }
        var options = context.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;
        try
        {
            var value = await JsonSerializer.DeserializeAsync<T>(new LimitedStream(context.Request.Body, MaxBody), options, context.RequestAborted);
            if (value is null)
            {
                await ApiErrors.WriteAsync(context, 400, shape);
            }
            return value;
        }
        catch (LimitedStream.TooLargeException)
        {
            await ApiErrors.WriteAsync(context, 413, "request_too_large", $"the body must be at most {MaxBody / 1024} KB");
            return null;
        }
        catch (JsonException)
        {
            await ApiErrors.WriteAsync(context, 400, shape);
            return null;
        }
    }

    private static async Task List(HttpContext context, ManagementContext m, int page = 1, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 25)
    {
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var query = db.Set<WebhookEndpoint>().AsNoTracking();
        var total = await query.CountAsync(ct);
        var rows = await query.OrderByDescending(w => w.CreatedAt).ThenBy(w => w.WebhookId).Skip((page - 1) * pageSize).Take(pageSize).ToListAsync(ct);
        await context.Response.WriteAsJsonAsync(new PageOf<WebhookView>([.. rows.Select(w => View(w))], page, pageSize, total), ct);
    }

    private static async Task Get(string id, HttpContext context, ManagementContext m)
    {
        if (!IsWebhookId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync(context.RequestAborted);
        if (await db.Set<WebhookEndpoint>().AsNoTracking().FirstOrDefaultAsync(w => w.WebhookId == id, context.RequestAborted) is not { } webhook)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        await context.Response.WriteAsJsonAsync(View(webhook), context.RequestAborted);
    }

    private static async Task Create(HttpContext context, ManagementContext m)
    {
        if (await ReadAsync<NewWebhook>(context, "the body must be a JSON object: url, events, and optionally secret, format, description, enabled") is not { } request)
        {
            return;
        }
        var error = UrlError(request.Url) ?? EventsError(request.Events) ?? FormatError(request.Format) ?? DescriptionError(request.Description);
        if (error is null && request.Secret is not null && !WebhookSignature.IsSecret(request.Secret))
        {
            error = "secret must be whsec_ and the base64 of 24 to 64 random bytes, or left out to have one made";
        }
        if (error is not null)
        {
            await ApiErrors.WriteAsync(context, 400, error);
            return;
        }
        var ct = context.RequestAborted;
        var now = m.Time.GetUtcNow();
        var webhook = new WebhookEndpoint
        {
            WebhookId = "wh_" + RandomNumberGenerator.GetString(Alphabet, 16), Url = request.Url!, Events = [.. request.Events!.Distinct(StringComparer.Ordinal)],
            Secret = request.Secret ?? WebhookSignature.NewSecret(), Format = request.Format ?? WebhookEndpoint.Json,
            Description = string.IsNullOrEmpty(request.Description) ? null : request.Description, Enabled = request.Enabled ?? true, CreatedAt = now, UpdatedAt = now,
        };
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        db.Add(webhook);
        m.Audit(db, context, "webhook_create", webhook.WebhookId, null, Snapshot(webhook));
        await db.SaveChangesAsync(ct);
        context.Response.StatusCode = StatusCodes.Status201Created;
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.WriteAsJsonAsync(View(webhook, withSecret: true), ct);
    }

    private static async Task Update(string id, HttpContext context, ManagementContext m)
    {
        if (!IsWebhookId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        if (await ReadAsync<WebhookUpdate>(context, "the body must be a JSON object with any of url, events, format, description, enabled") is not { } update)
        {
            return;
        }
        var error = (update.Url is null ? null : UrlError(update.Url)) ?? (update.Events is null ? null : EventsError(update.Events)) ??
            FormatError(update.Format) ?? DescriptionError(update.Description);
        if (error is not null)
        {
            await ApiErrors.WriteAsync(context, 400, error);
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (await db.Set<WebhookEndpoint>().FirstOrDefaultAsync(w => w.WebhookId == id, ct) is not { } webhook)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        var before = Snapshot(webhook);
        webhook.Url = update.Url ?? webhook.Url;
        webhook.Events = update.Events is { } events ? [.. events.Distinct(StringComparer.Ordinal)] : webhook.Events;
        webhook.Format = update.Format ?? webhook.Format;
        webhook.Description = update.Description is null ? webhook.Description : update.Description.Length == 0 ? null : update.Description;
        webhook.Enabled = update.Enabled ?? webhook.Enabled;
        webhook.UpdatedAt = m.Time.GetUtcNow();
        m.Audit(db, context, "webhook_update", id, before, Snapshot(webhook));
        await db.SaveChangesAsync(ct);
        if (webhook.Enabled)
        {
            // Deliveries held back while it was disabled are due now.
            context.RequestServices.GetRequiredService<DeliverySignal>().Wake();
        }
        await context.Response.WriteAsJsonAsync(View(webhook), ct);
    }

    private static async Task Delete(string id, HttpContext context, ManagementContext m)
    {
        if (!IsWebhookId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (await db.Set<WebhookEndpoint>().FirstOrDefaultAsync(w => w.WebhookId == id, ct) is not { } webhook)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        db.Remove(webhook);
        m.Audit(db, context, "webhook_delete", id, Snapshot(webhook), null);
        await db.SaveChangesAsync(ct);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static async Task Test(string id, HttpContext context, ManagementContext m, GatewayEvents events, WebhookOptions options, DeliverySignal signal)
    {
        if (!IsWebhookId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (await db.Set<WebhookEndpoint>().AsNoTracking().FirstOrDefaultAsync(w => w.WebhookId == id, ct) is not { } webhook)
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        if (!webhook.Enabled)
        {
            await ApiErrors.WriteAsync(context, 409, "invalid_request_error", $"webhook '{id}' is disabled: enable it to send it a test");
            return;
        }
        var now = m.Time.GetUtcNow();
        var data = new System.Text.Json.Nodes.JsonObject { ["webhook_id"] = id, ["message"] = "A test event from ClaudeProxy." };
        var test = new GatewayEventRecord { Id = GatewayEvent.NewId(), Type = EventTypes.WebhookTest, Time = now, Instance = events.Instance, Data = data.ToJsonString() };
        var delivery = new WebhookDelivery
        {
            WebhookId = id, EventId = test.Id, Status = WebhookDelivery.Pending, NextAttemptAt = now, RetryUntil = now + options.RetryWindow, CreatedAt = now,
        };
        db.Add(test);
        db.Add(delivery);
        await db.SaveChangesAsync(ct);
        await signal.WakeEverywhereAsync(ct);
        context.Response.StatusCode = StatusCodes.Status202Accepted;
        await context.Response.WriteAsJsonAsync(new WebhookSendResult(test.Id, delivery.Id), ct);
    }

    private static async Task Deliveries(string id, HttpContext context, ManagementContext m, string? status = null, int page = 1,
        [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 25)
    {
        if (!IsWebhookId(id))
        {
            await WriteBadIdAsync(context);
            return;
        }
        if (status is not null && status is not (WebhookDelivery.Pending or WebhookDelivery.Delivered or WebhookDelivery.Failed))
        {
            await ApiErrors.WriteAsync(context, 400, "status must be pending, delivered or failed");
            return;
        }
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (!await db.Set<WebhookEndpoint>().AnyAsync(w => w.WebhookId == id, ct))
        {
            await WriteNotFoundAsync(context, id);
            return;
        }
        var query = db.Set<WebhookDelivery>().AsNoTracking().Where(d => d.WebhookId == id);
        if (status is not null)
        {
            query = query.Where(d => d.Status == status);
        }
        var total = await query.CountAsync(ct);
        var rows = await query.OrderByDescending(d => d.Id).Skip((page - 1) * pageSize).Take(pageSize)
            .Join(db.Set<GatewayEventRecord>(), d => d.EventId, e => e.Id, (d, e) => new { Delivery = d, e.Type, e.Time })
            .OrderByDescending(x => x.Delivery.Id).ToListAsync(ct);
        var views = rows.Select(x => DeliveryView(x.Delivery, x.Type, x.Time)).ToList();
        await context.Response.WriteAsJsonAsync(new PageOf<WebhookDeliveryView>(views, page, pageSize, total), ct);
    }

    private static WebhookDeliveryView DeliveryView(WebhookDelivery d, string type, DateTimeOffset time) => new(d.Id, d.WebhookId, d.EventId, type, time, d.Status,
        d.Attempts, d.LastStatusCode, d.LastError, d.LastAttemptAt, d.Status == WebhookDelivery.Pending ? d.NextAttemptAt : null, d.DeliveredAt, d.CreatedAt);

    private const string ResendSql = """
        UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = @now, retry_until = @until, leased_until = NULL, lease_token = NULL
        WHERE id = @id AND status <> 'pending'
        RETURNING event_id
        """;

    private static async Task Resend(string deliveryId, HttpContext context, ManagementContext m, NpgsqlDataSource dataSource, WebhookOptions options,
        DeliverySignal signal)
    {
        if (!long.TryParse(deliveryId, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) || id <= 0)
        {
            await ApiErrors.WriteAsync(context, 400, "a delivery's id is a positive whole number");
            return;
        }
        var ct = context.RequestAborted;
        var now = m.Time.GetUtcNow();
        // One statement: of two resends at once, one sets the delivery waiting and the other finds it waiting already.
        await using (var command = dataSource.CreateCommand(ResendSql))
        {
            command.Parameters.AddWithValue("id", id);
            command.Parameters.AddWithValue("now", now);
            command.Parameters.AddWithValue("until", now + options.RetryWindow);
            if (await command.ExecuteScalarAsync(ct) is string eventId)
            {
                await signal.WakeEverywhereAsync(ct);
                context.Response.StatusCode = StatusCodes.Status202Accepted;
                await context.Response.WriteAsJsonAsync(new WebhookSendResult(eventId, id), ct);
                return;
            }
        }
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (await db.Set<WebhookDelivery>().AsNoTracking().AnyAsync(d => d.Id == id, ct))
        {
            await ApiErrors.WriteAsync(context, 409, "invalid_request_error", $"delivery {id} is waiting to be sent already");
            return;
        }
        await ApiErrors.WriteAsync(context, 404, "not_found_error", $"no delivery {id}");
    }

    private static async Task ListEvents(HttpContext context, ManagementContext m, string? type = null, int page = 1,
        [Microsoft.AspNetCore.Mvc.FromQuery(Name = "page_size")] int pageSize = 25)
    {
        if (type is not null && !EventTypes.IsKnown(type))
        {
            await ApiErrors.WriteAsync(context, 400, $"type must be one of {string.Join(", ", EventTypes.All)}");
            return;
        }
        page = Math.Max(1, page);
        pageSize = Math.Clamp(pageSize, 1, 200);
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        var query = db.Set<GatewayEventRecord>().AsNoTracking();
        if (type is not null)
        {
            query = query.Where(e => e.Type == type);
        }
        var total = await query.CountAsync(ct);
        var rows = await query.OrderByDescending(e => e.Seq).Skip((page - 1) * pageSize).Take(pageSize).ToListAsync(ct);
        var views = rows.Select(e =>
        {
            using var data = JsonDocument.Parse(e.Data);
            return new GatewayEventView(e.Id, e.Type, e.Time, e.Instance, data.RootElement.Clone());
        }).ToList();
        await context.Response.WriteAsJsonAsync(new PageOf<GatewayEventView>(views, page, pageSize, total), ct);
    }
}
