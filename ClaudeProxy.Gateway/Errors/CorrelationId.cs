namespace ClaudeProxy.Gateway.Errors;

/// <summary>
/// One id per request: the client's <c>x-request-id</c> when it is sane, otherwise a new one. It is returned as
/// <c>x-request-id</c>, used as <c>request_id</c> in the gateway's own errors, and recorded with usage.
/// </summary>
public static class CorrelationId
{
    public const string Header = "x-request-id";
    private const string ItemKey = "claudeproxy.correlation";

    public static string Get(HttpContext context) =>
        context.Items.TryGetValue(ItemKey, out var value) && value is string id ? id : Assign(context);

    public static string Assign(HttpContext context)
    {
        var incoming = context.Request.Headers[Header].ToString();
        var id = IsSane(incoming) ? incoming : NewId();
        context.Items[ItemKey] = id;
        return id;
    }

    /// <summary><c>req_</c> and a time-ordered UUID in hex, written once.</summary>
    private static string NewId() => string.Create(36, Guid.CreateVersion7(), static (span, guid) =>
    {
        "req_".CopyTo(span);
        guid.TryFormat(span[4..], out _, "N");
    });

    private static bool IsSane(string value)
    {
        if (value.Length is 0 or > 128)
        {
            return false;
        }
        foreach (var c in value)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':'))
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>Assigns the correlation id, returns it, and turns an unhandled exception into a 500 in Anthropic's shape.</summary>
public sealed class GatewayErrorMiddleware(RequestDelegate next, ILogger<GatewayErrorMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var id = CorrelationId.Assign(context);
        context.Response.Headers[CorrelationId.Header] = id;
        try
        {
            await next(context);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // Client went away.
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Unhandled error on {Path} (request {RequestId})", context.Request.Path.Value, id);
            await ApiErrors.WriteAsync(context, 500, "api_error", "Internal error in the gateway.");
        }
    }
}
