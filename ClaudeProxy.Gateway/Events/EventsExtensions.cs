namespace ClaudeProxy.Gateway.Events;

public static class EventsExtensions
{
    /// <summary>
    /// The event bus (always: raising is a no-op without Postgres), spend threshold detection, and with Postgres the
    /// writer that stores events, the webhook dispatcher and what wakes it.
    /// </summary>
    public static IHostApplicationBuilder AddEvents(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<GatewayEvents>();
        builder.Services.AddSingleton<SpendThresholds>();
        builder.Services.AddSingleton(WebhookOptions.From(builder.Configuration));
        if (!builder.AddBackingServices().Postgres)
        {
            return builder;
        }
        builder.Services.AddSingleton<DeliverySignal>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DeliverySignal>());
        builder.Services.AddSingleton<EventWriter>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<EventWriter>());
        builder.Services.AddSingleton<WebhookDispatcher>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<WebhookDispatcher>());
        builder.Services.AddHostedService<OutageEvents>();
        return builder;
    }
}
