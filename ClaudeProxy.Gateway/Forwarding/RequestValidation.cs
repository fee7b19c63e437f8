using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Telemetry;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The checks on what a device asks for, before anything is reserved: a body <see cref="RequestBody"/> refused (too
/// large, or not what the API accepts) and a model outside the device's allowlist, each refused and counted.
/// </summary>
public static class RequestValidation
{
    /// <summary>Refuses a body <see cref="RequestBody.ReadAsync"/> did not accept, with the status and message it gave.</summary>
    public static Task RefuseBodyAsync(HttpContext context, int status, string error, GatewayMetrics metrics)
    {
        metrics.Rejected(status == 413 ? "too_large" : "invalid_request");
        return ApiErrors.WriteAsync(context, status, error);
    }

    /// <summary>Refuses a model outside the device's allowlist.</summary>
    public static Task RefuseModelAsync(HttpContext context, string model, GatewayMetrics metrics)
    {
        metrics.Rejected("model");
        return ApiErrors.WriteAsync(context, 403, $"model '{model}' is not allowed for this device");
    }
}
