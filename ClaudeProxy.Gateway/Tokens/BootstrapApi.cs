using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Limits;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary><c>POST /bootstrap</c> and <c>POST /refresh</c>: how a device gets and renews its wrapper token.</summary>
public static partial class BootstrapApi
{
    private const int MaxBodyBytes = 16 * 1024;

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,128}$")]
    private static partial Regex DeviceIdPattern();

    public static IEndpointRouteBuilder MapBootstrapApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/bootstrap", Bootstrap);
        app.MapPost("/refresh", Refresh);
        return app;
    }

    private static async Task Bootstrap(HttpContext context, IDeviceDirectory devices, TokenService tokens, GatewayOptions options,
        AdmissionService limits, LimitOptions limitOptions)
    {
        if (!await WithinClientLimitAsync(context, limits, limitOptions))
        {
            return;
        }
        if (context.Request.ContentLength > MaxBodyBytes)
        {
            await ApiErrors.WriteAsync(context, 413, "request body is too large");
            return;
        }
        JsonElement body;
        try
        {
            using var document = await JsonDocument.ParseAsync(new LimitedStream(context.Request.Body, MaxBodyBytes), default, context.RequestAborted);
            body = document.RootElement.Clone();
        }
        catch (JsonException)
        {
            await ApiErrors.WriteAsync(context, 400, "request body must be a JSON object with device_id");
            return;
        }
        catch (LimitedStream.TooLargeException)
        {
            await ApiErrors.WriteAsync(context, 413, "request body is too large");
            return;
        }
        if (body.ValueKind != JsonValueKind.Object ||
            !body.TryGetProperty("device_id", out var idElement) || idElement.ValueKind != JsonValueKind.String ||
            idElement.GetString() is not { } deviceId || !DeviceIdPattern().IsMatch(deviceId))
        {
            await ApiErrors.WriteAsync(context, 400, "device_id is required: 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'");
            return;
        }
        var appVersion = OptionalString(body, "app_version", 64);
        var userId = OptionalString(body, "user_id", 128);
        if (appVersion.Invalid || userId.Invalid)
        {
            await ApiErrors.WriteAsync(context, 400, "app_version (at most 64 characters) and user_id (at most 128) must be strings");
            return;
        }
        var admission = await devices.BootstrapAsync(new BootstrapRequest(deviceId, appVersion.Value, userId.Value), context.RequestAborted);
        await WriteToken(context, admission, tokens, options);
    }

    private static async Task Refresh(HttpContext context, IDeviceDirectory devices, TokenService tokens, GatewayOptions options,
        AdmissionService limits, LimitOptions limitOptions)
    {
        if (!await WithinClientLimitAsync(context, limits, limitOptions))
        {
            return;
        }
        var check = await tokens.ValidateAsync(CredentialReader.Read(context.Request));
        switch (check.Status)
        {
            case TokenStatus.Missing:
                await ApiErrors.WriteAsync(context, 401, "missing wrapper token: send it as Authorization: Bearer or x-api-key");
                return;
            case TokenStatus.Expired:
                await ApiErrors.WriteAsync(context, 401, "wrapper token has expired: call POST /bootstrap again");
                return;
            case TokenStatus.Invalid:
                await ApiErrors.WriteAsync(context, 401, "invalid wrapper token: call POST /bootstrap again");
                return;
        }
        var admission = await devices.RefreshAsync(check.Identity!, context.RequestAborted);
        await WriteToken(context, admission, tokens, options);
    }

    /// <summary>Token issuing is cheap to ask for and costly to abuse: a per-client-IP limit, in the shared limiter.</summary>
    private static async ValueTask<bool> WithinClientLimitAsync(HttpContext context, AdmissionService limits, LimitOptions options)
    {
        var ip = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var decision = await limits.AcquireAsync("ip:" + ip, options.BootstrapRateLimit, options.BootstrapWindow, context.RequestAborted);
        if (decision is not { } d)
        {
            await ApiErrors.WriteAsync(context, 503, "api_error", "the gateway cannot check limits right now (Redis is unavailable); retry shortly");
            return false;
        }
        if (!d.Allowed)
        {
            ProxyHandler.WriteRateHeaders(context, d);
            await ApiErrors.WriteAsync(context, 429, "rate_limit_error", $"too many token requests from this address: at most {d.Limit} per minute");
            return false;
        }
        return true;
    }

    private static async Task WriteToken(HttpContext context, DeviceAdmission admission, TokenService tokens, GatewayOptions options)
    {
        if (admission.Policy is not { } policy)
        {
            await ApiErrors.WriteAsync(context, admission.Status, admission.Refusal ?? "device not admitted");
            return;
        }
        var issued = tokens.Issue(admission.DeviceId, admission.UserId, admission.OrgId, policy);
        var baseUrl = options.ProxyBaseUrl ?? $"{context.Request.Scheme}://{context.Request.Host}";
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.WriteAsJsonAsync(new TokenResponse(issued.Token, baseUrl, issued.ExpiresAt), GatewayJsonContext.Default.TokenResponse, cancellationToken: context.RequestAborted);
    }

    private static (string? Value, bool Invalid) OptionalString(JsonElement body, string name, int maxLength)
    {
        if (!body.TryGetProperty(name, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return (null, false);
        }
        return element.ValueKind == JsonValueKind.String && element.GetString() is { } s && s.Length <= maxLength ? (s, false) : (null, true);
    }
}
