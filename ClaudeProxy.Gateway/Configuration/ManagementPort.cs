using Microsoft.AspNetCore.Connections.Features;

namespace ClaudeProxy.Gateway.Configuration;

/// <summary>Tells requests on the management port from requests on the proxy port, and keeps each to its own routes.</summary>
public static class ManagementPort
{
    public const string ItemKey = "claudeproxy.management";

    public static bool IsManagement(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(ItemKey, out var value) == true && value is true;

    /// <summary>
    /// The management port serves <c>/manage</c>, the Admin API paths under <c>/v1/organizations</c>, <c>/metrics</c> and
    /// health only; the proxy port never serves those management paths (nor forwards them upstream). Anything else is a
    /// 404 in Anthropic's shape.
    /// </summary>
    public static IApplicationBuilder UsePortSeparation(this IApplicationBuilder app) => app.Use((context, next) =>
    {
        var path = context.Request.Path;
        var managementPath = path.StartsWithSegments("/manage") || path.StartsWithSegments("/v1/organizations") ||
            path.StartsWithSegments(Telemetry.PrometheusMetrics.Path);
        var health = path.StartsWithSegments("/healthz") || path.StartsWithSegments("/readyz");
        if (IsManagement(context) ? managementPath || health : !managementPath)
        {
            return next(context);
        }
        return Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"{context.Request.Method} {path} is not served on this port");
    });
}
