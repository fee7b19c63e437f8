using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// What every ClaudeProxy service shares: OpenTelemetry, health checks, resilience and service discovery
/// for HttpClients. The same shape as an Aspire ServiceDefaults project.
/// </summary>
public static class ServiceDefaultsExtensions
{
    public const string LivenessTag = "live";
    public const string HealthPath = "/healthz";
    public const string ReadinessPath = "/readyz";

    public static TBuilder AddServiceDefaults<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        builder.ConfigureOpenTelemetry();
        builder.AddDefaultHealthChecks();
        builder.Services.AddServiceDiscovery();

        // Applies to clients made by IHttpClientFactory only. The gateway's forwarding client is built
        // separately and never gets these: a 10 s attempt timeout would cut every long generation.
        builder.Services.ConfigureHttpClientDefaults(http =>
        {
            http.AddStandardResilienceHandler();
            http.AddServiceDiscovery();
        });
        return builder;
    }

    public static TBuilder ConfigureOpenTelemetry<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        var exporting = builder.ExportsTelemetry();
        var otel = builder.Services.AddOpenTelemetry()
            .WithMetrics(metrics => metrics
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddRuntimeInstrumentation()
                .AddMeter(TelemetryNames.Meters));

        // Traces and log records only exist to be exported: without a collector to send them to, recording
        // an activity per request and a second copy of every log line is pure cost on the hot path.
        if (exporting)
        {
            builder.Logging.AddOpenTelemetry(logging =>
            {
                logging.IncludeFormattedMessage = true;
                logging.IncludeScopes = true;
            });
            otel.WithTracing(tracing => tracing
                .AddSource(builder.Environment.ApplicationName)
                .AddSource(TelemetryNames.ActivitySources)
                .AddAspNetCoreInstrumentation(o => o.Filter = ctx =>
                    !ctx.Request.Path.StartsWithSegments(HealthPath) && !ctx.Request.Path.StartsWithSegments(ReadinessPath))
                .AddHttpClientInstrumentation());
            otel.UseOtlpExporter();
            // W3C trace context alone, injected by .NET's own handlers: HttpClient's instrumentation would otherwise add
            // traceparent and baggage to every outgoing request, including the gateway's calls to Anthropic, which
            // are sent without trace headers.
            Sdk.SetDefaultTextMapPropagator(new OpenTelemetry.Context.Propagation.TraceContextPropagator());
        }
        return builder;
    }

    /// <summary>True when an OTLP endpoint is configured: traces and OpenTelemetry log records are only worth recording then.</summary>
    public static bool ExportsTelemetry(this IHostApplicationBuilder builder) =>
        !string.IsNullOrWhiteSpace(builder.Configuration[ClaudeProxy.Settings.SettingsCatalogue.OtelExporterOtlpEndpoint.Key]);

    public static TBuilder AddDefaultHealthChecks<TBuilder>(this TBuilder builder) where TBuilder : IHostApplicationBuilder
    {
        builder.Services.AddHealthChecks()
            .AddCheck("self", () => HealthCheckResult.Healthy(), [LivenessTag])
            .AddCheck<StoppingHealthCheck>(StoppingHealthCheck.Name, tags: ["ready"]);
        return builder;
    }

    /// <summary>Maps <c>GET /healthz</c> (liveness) and <c>GET /readyz</c> (every registered check), in every environment.</summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        app.MapHealthChecks(HealthPath, new HealthCheckOptions
        {
            Predicate = r => r.Tags.Contains(LivenessTag),
            ResponseWriter = HealthResponseWriter.WriteAsync,
        }).AllowAnonymous();
        app.MapHealthChecks(ReadinessPath, new HealthCheckOptions
        {
            ResponseWriter = HealthResponseWriter.WriteAsync,
        }).AllowAnonymous();
        return app;
    }
}
