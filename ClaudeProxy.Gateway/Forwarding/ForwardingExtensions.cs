using ClaudeProxy.Gateway.Errors;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace ClaudeProxy.Gateway.Forwarding;

public static class ForwardingExtensions
{
    public static IHostApplicationBuilder AddForwarding(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton(BreakerOptions.Load(builder.Configuration));
        builder.Services.AddHttpForwarder();
        builder.Services.TryAddKeyedSingleton(UpstreamCircuitBreaker.TimeProviderKey, TimeProvider.System);
        builder.Services.AddSingleton<UpstreamCircuitBreaker>();
        builder.Services.AddSingleton<BreakerResetBroadcast>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<BreakerResetBroadcast>());
        builder.Services.AddSingleton<UpstreamClient>();
        builder.Services.AddSingleton<UpstreamTransformer>();
        builder.Services.AddSingleton<ProxyHandler>();
        builder.Services.AddSingleton<ModelsHandler>();
        // The request path's stages, each called in turn by ProxyHandler.
        builder.Services.AddSingleton<UpstreamForwarder>();
        builder.Services.AddSingleton<Limits.Reservations>();
        builder.Services.AddSingleton<Limits.Refusals>();
        builder.Services.AddSingleton<Usage.UsageEventBuilder>();
        return builder;
    }

    /// <summary>
    /// The wire contract: the metered Anthropic routes (of the models, those the caller may use: <see cref="ModelsHandler"/>),
    /// a local answer to <c>/api/hello</c>, and 404 in Anthropic's shape for any other path, so the master key never
    /// reaches an endpoint the gateway does not meter.
    /// </summary>
    public static IEndpointRouteBuilder MapAnthropicApi(this IEndpointRouteBuilder app)
    {
        var handler = app.ServiceProvider.GetRequiredService<ProxyHandler>();
        app.MapPost("/v1/messages", ctx => handler.HandleAsync(ctx, ApiRoute.Messages));
        app.MapPost("/v1/messages/count_tokens", ctx => handler.HandleAsync(ctx, ApiRoute.CountTokens));
        app.MapPost("/v1/complete", ctx => handler.HandleAsync(ctx, ApiRoute.Complete));
        var models = app.ServiceProvider.GetRequiredService<ModelsHandler>();
        app.MapGet("/v1/models", ctx => models.ListAsync(ctx));
        app.MapGet("/v1/models/{id}", (HttpContext ctx, string id) => models.RetrieveAsync(ctx, id));
        app.MapMethods("/api/hello", ["GET", "HEAD"], (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "application/json";
            return HttpMethods.IsHead(ctx.Request.Method) ? Task.CompletedTask : ctx.Response.WriteAsync("{\"message\":\"hello\"}");
        });
        app.Map("/v1/{**rest}", ctx => ApiErrors.WriteAsync(ctx, 404, "not_found_error", $"{ctx.Request.Method} {ctx.Request.Path} is not served by this gateway"));
        return app;
    }
}
