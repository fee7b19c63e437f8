using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Policies;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.Net.Http.Headers;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// What Claude Code calls besides the Anthropic API when it is signed in through the gateway: its own OpenTelemetry
/// (OTLP/HTTP), accepted and dropped, and its managed settings, read from Postgres (and the device's standing).
/// Neither goes upstream or records usage.
/// </summary>
public static class GatewayModeApi
{
    private static readonly string[] TelemetrySignals = ["metrics", "logs", "traces"];
    private static readonly byte[] EmptyJson = "{}"u8.ToArray();

    public static IEndpointRouteBuilder MapGatewayModeApi(this IEndpointRouteBuilder app)
    {
        var maxBytes = app.ServiceProvider.GetRequiredService<GatewayOptions>().MaxPayloadSize;
        foreach (var signal in TelemetrySignals)
        {
            app.MapPost("/v1/" + signal, ctx => DiscardTelemetryAsync(ctx, maxBytes));
        }
        var authenticator = app.ServiceProvider.GetRequiredService<DeviceAuthenticator>();
        app.MapGet("/managed/settings", ctx => ManagedSettingsAsync(ctx, authenticator));
        app.MapUsageLimitsApi();
        return app;
    }

    /// <summary>
    /// Accepts a batch of telemetry and drops it. No token is asked for: Claude Code expects a 200 whatever it sends,
    /// its exporter may go on sending a token that has since expired, and what is dropped needs no protection; an
    /// anonymous sender costs what any refused request costs. The body is read and dropped as it arrives, up to
    /// <c>MAX_PAYLOAD_SIZE</c>; beyond that the rest is not read and the connection is closed after the answer.
    /// </summary>
    private static async Task DiscardTelemetryAsync(HttpContext context, long maxBytes)
    {
        var json = IsJson(context.Request.ContentType);
        if (json is null)
        {
            await ApiErrors.WriteAsync(context, 415, "invalid_request_error",
                "OpenTelemetry data is accepted as application/x-protobuf or application/json (OTLP/HTTP)");
            return;
        }
        bool whole;
        try
        {
            whole = await DrainAsync(context, maxBytes);
        }
        catch (BadHttpRequestException e)
        {
            await ApiErrors.WriteAsync(context, e.StatusCode, "the request body could not be read: " + e.Message);
            return;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        var response = context.Response;
        if (!whole && (HttpProtocol.IsHttp11(context.Request.Protocol) || HttpProtocol.IsHttp10(context.Request.Protocol)))
        {
            response.Headers.Connection = "close";
        }
        // An empty export response is a full success, in both encodings.
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = json.Value ? "application/json" : "application/x-protobuf";
        response.ContentLength = json.Value ? EmptyJson.Length : 0;
        if (json.Value)
        {
            await response.Body.WriteAsync(EmptyJson, context.RequestAborted);
        }
    }

    /// <summary>True for OTLP's JSON encoding, false for its protobuf encoding, null for anything else.</summary>
    private static bool? IsJson(string? contentType)
    {
        if (!MediaTypeHeaderValue.TryParse(contentType, out var media))
        {
            return null;
        }
        var type = media.MediaType;
        if (type.Equals("application/json", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }
        return type.Equals("application/x-protobuf", StringComparison.OrdinalIgnoreCase) || type.Equals("application/protobuf", StringComparison.OrdinalIgnoreCase)
            ? false
            : null;
    }

    /// <summary>Reads the body and drops each chunk as it comes; false when it is larger than <paramref name="maxBytes"/> (then not all of it is read).</summary>
    private static async Task<bool> DrainAsync(HttpContext context, long maxBytes)
    {
        if (context.Request.ContentLength > maxBytes)
        {
            return false;
        }
        var reader = context.Request.BodyReader;
        long total = 0;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(context.RequestAborted);
                total += result.Buffer.Length;
                reader.AdvanceTo(result.Buffer.End);
                if (total > maxBytes)
                {
                    return false;
                }
                if (result.IsCompleted || result.IsCanceled)
                {
                    return true;
                }
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return false;
        }
    }

    /// <summary>
    /// Claude Code's managed settings: none are configured, which Claude Code takes as no policy. A token that is
    /// missing, invalid or expired, or a device that may no longer use it, gets the 401 that ends its session.
    /// </summary>
    /// <summary>
    /// The caller's managed settings: everyone's document merged with those of their groups (see
    /// <see cref="Management.ManagedSettingsApi"/>), with a checksum over the canonical JSON that is also the ETag.
    /// Read from Postgres only; Claude Code asks about once an hour.
    /// </summary>
    private static async Task ManagedSettingsAsync(HttpContext context, DeviceAuthenticator authenticator)
    {
        if (await authenticator.AuthenticateAsync(context) is not { } identity)
        {
            return;
        }
        var contexts = context.RequestServices.GetService<Microsoft.EntityFrameworkCore.IDbContextFactory<ClaudeProxy.Gateway.Data.GatewayDbContext>>();
        System.Text.Json.Nodes.JsonObject? settings = null;
        if (contexts is not null)
        {
            await using var db = await contexts.CreateDbContextAsync(context.RequestAborted);
            settings = await Management.ManagedSettingsApi.EffectiveAsync(db, identity.DeviceId, context.RequestAborted);
        }
        if (settings is null)
        {
            await ApiErrors.WriteAsync(context, 404, "not_found_error", "no managed settings are configured for this gateway");
            return;
        }
        var canonical = Management.ManagedSettingsApi.Canonical(settings);
        var checksum = Management.ManagedSettingsApi.Checksum(canonical);
        var etag = "\"" + checksum + "\"";
        var response = context.Response;
        response.Headers.ETag = etag;
        response.Headers.CacheControl = "private, no-cache";
        if (context.Request.Headers.IfNoneMatch.Any(v => v is not null && v.Split(',').Any(t => t.Trim() == etag)))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return;
        }
        response.ContentType = "application/json";
        await response.WriteAsync("{\"uuid\":\"" + Management.ManagedSettingsApi.UuidOf(checksum) + "\",\"checksum\":\"" + checksum
            + "\",\"settings\":" + canonical + "}", context.RequestAborted);
    }
}
