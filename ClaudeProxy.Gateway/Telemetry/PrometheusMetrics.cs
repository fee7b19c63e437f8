using OpenTelemetry.Metrics;

namespace ClaudeProxy.Gateway.Telemetry;

/// <summary>
/// <c>GET /metrics</c> in Prometheus' text format, on the management port only (see
/// <see cref="Configuration.ManagementPort"/>): every meter the service defaults record, ASP.NET Core's
/// <c>http.server.active_requests</c> among them, which a HorizontalPodAutoscaler scales on. No operator key: like
/// <c>/healthz</c>, it is for the cluster's scraper, and the network decides who reaches that port. The numbers are
/// gathered when scraped; nothing is added to the request path.
/// </summary>
public static class PrometheusMetrics
{
    public const string Path = "/metrics";

    public static IHostApplicationBuilder AddPrometheusMetrics(this IHostApplicationBuilder builder)
    {
        // No cached scrape: every scrape reads the counters as they are (a scraper asks every 15 s or so; the exporter's
        // default would answer a second scraper within 300 ms with the first one's numbers).
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        return builder;
    }

    public static IEndpointRouteBuilder MapPrometheusMetrics(this IEndpointRouteBuilder app)
    {
        app.MapPrometheusScrapingEndpoint(Path).AllowAnonymous();
        return app;
    }
}
