using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Events;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Gateway.Usage;

namespace ClaudeProxy.Gateway;

/// <summary>The gateway, concern by concern. Program runs it; tests host it in-process on loopback.</summary>
public static class GatewayApplication
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        var options = builder.AddGatewayHosting();
        builder.AddServiceDefaults();
        builder.AddPrometheusMetrics();
        // Which of Postgres and Redis are configured; each concern below chooses its implementations from it.
        var backing = builder.AddBackingServices();
        builder.AddData();
        builder.AddTokens();
        builder.AddLimits();
        builder.AddUsage();
        builder.AddForwarding();
        builder.AddManagement();
        builder.AddEvents();
        builder.AddSignIn(options);

        var app = builder.Build();
        if (options.TrustedProxies.Count > 0)
        {
            app.UseForwardedHeaders();
        }
        app.UseMiddleware<GatewayErrorMiddleware>();
        app.UsePortSeparation();
        if (options.CorsOrigins.Count > 0)
        {
            app.UseCors();
        }
        app.MapDefaultEndpoints();
        app.MapSignIn();
        app.MapPrometheusMetrics();
        app.MapBootstrapApi();
        app.MapDeviceBreakerApi();
        app.MapDeviceUsageApi();
        app.MapManagementApi();
        app.MapAnthropicApi();
        app.MapGatewayModeApi();
        app.MapFallback(ctx => ApiErrors.WriteAsync(ctx, 404, "not_found_error", $"{ctx.Request.Method} {ctx.Request.Path} is not served by this gateway"));
        if (!backing.Postgres)
        {
            app.Logger.LogWarning("No Postgres configured (ConnectionStrings__claudeproxydb or DATABASE_URL): usage is kept in memory and lost on restart");
        }
        return app;
    }
}
