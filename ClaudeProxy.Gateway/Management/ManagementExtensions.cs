using System.Text.Json;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Policies;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace ClaudeProxy.Gateway.Management;

public static class ManagementExtensions
{
    public const string DocumentName = "management";

    public static IHostApplicationBuilder AddManagement(this IHostApplicationBuilder builder)
    {
        var database = builder.AddBackingServices().Postgres;
        builder.Services.Configure<JsonOptions>(o => o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower);
        builder.Services.AddOpenApi(DocumentName, o => o.ShouldInclude = d => d.RelativePath is { } path &&
            (path.StartsWith("manage/", StringComparison.Ordinal) || path.StartsWith("v1/organizations/", StringComparison.Ordinal)));
        builder.Services.AddSingleton<GatewayInstances>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<GatewayInstances>());
        builder.Services.AddSingleton<Limits.ILiveInstances>(sp => sp.GetRequiredService<GatewayInstances>());
        if (database)
        {
            builder.Services.AddSingleton<ManagementContext>();
            builder.Services.AddSingleton<AnalyticsQueries>();
            builder.Services.TryAddKeyedSingleton(AnalyticsQueries.TimeProviderKey, TimeProvider.System);
        }
        return builder;
    }

    /// <summary>The management API under <c>/manage/v1</c> on the management port, with its OpenAPI document.</summary>
    public static IEndpointRouteBuilder MapManagementApi(this IEndpointRouteBuilder app)
    {
        var database = app.ServiceProvider.GetRequiredService<BackingServices>().Postgres;
        app.MapOpenApi("/manage/v1/openapi/{documentName}.json");
        var api = app.MapGroup("/manage/v1").AddEndpointFilter(OperatorOnlyAsync);
        api.MapGet("/gateways", async (GatewayInstances instances) => TypedResults.Ok(await instances.ListAsync()))
            .WithTags("Gateways").WithSummary("Gateway instances seen through Redis heartbeats, each with its circuit breaker");
        api.MapPost("/gateways/circuit-breaker/reset", async (BreakerResetBroadcast reset, HttpContext context) =>
        {
            await reset.ResetEverywhereAsync(context.RequestAborted);
            return TypedResults.NoContent();
        }).WithTags("Gateways").WithSummary("Close the circuit breaker on every instance");
        if (database)
        {
            api.MapDevicesApi();
            api.MapUsersApi();
            api.MapGroupsApi();
            api.MapGroupSpendApi();
            api.MapPolicyApi();
            api.MapManagedSettingsApi();
            api.MapUsageManagementApi();
            api.MapAnalyticsApi();
            // Anthropic's Admin API paths, so scripts written for it work against the gateway.
            var organizations = app.MapGroup("/v1/organizations").AddEndpointFilter(OperatorOnlyAsync);
            organizations.MapSpendLimitsApi();
            organizations.MapEffectiveSpendLimits();
        }
        return app;
    }

    /// <summary>Lets through only calls with the operator key, and those needing Postgres only when it is configured.</summary>
    internal static async ValueTask<object?> OperatorOnlyAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        if (!await OperatorKey.CheckAsync(http, http.RequestServices.GetRequiredService<GatewayOptions>(), http.RequestServices.GetRequiredService<TokenService>()))
        {
            return Results.Empty;
        }
        if (!http.RequestServices.GetRequiredService<BackingServices>().Postgres && !http.Request.Path.StartsWithSegments("/manage/v1/gateways"))
        {
            await ApiErrors.WriteAsync(http, 503, "api_error", "devices and usage need Postgres: set ConnectionStrings__claudeproxydb or DATABASE_URL");
            return Results.Empty;
        }
        return await next(context);
    }
}
