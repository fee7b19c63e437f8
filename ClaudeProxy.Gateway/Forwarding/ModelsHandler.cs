using System.Diagnostics;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Gateway.Usage;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// <c>GET /v1/models</c> and <c>GET /v1/models/{id}</c>, which show a caller only the models its allowlist lets it
/// use: the list is Anthropic's, filtered and paged by <see cref="ModelListTransformer"/>; a model outside the
/// allowlist is a 404 as Anthropic gives for a model that does not exist, and never goes upstream. Otherwise these
/// requests take the stages of <see cref="ProxyHandler"/> (token, breaker, admission with nothing to reserve,
/// forward, one usage event with the endpoint <c>models</c>) without its body or usage tap.
/// </summary>
public sealed partial class ModelsHandler(
    DeviceAuthenticator authenticator,
    Reservations reservations,
    Policies.PolicyResolver policies,
    AdmissionService admission,
    Refusals refusals,
    UpstreamForwarder upstream,
    UpstreamTransformer transformer,
    UsageEventBuilder usageEvents,
    IUsageSink usageSink,
    GatewayMetrics metrics,
    ILogger<ModelsHandler> logger)
{
    public async Task ListAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var identity = await authenticator.AuthenticateTokenAsync(context);
        if (identity is null)
        {
            metrics.Rejected("authentication");
        }
        else if (!ModelPage.TryRead(context.Request.Query, out var page, out var error))
        {
            metrics.Rejected("invalid_request");
            await ApiErrors.WriteAsync(context, 400, "invalid_request_error", error!);
        }
        else
        {
            await ForwardAsync(context, identity, new ModelListTransformer(transformer, policies.For(identity).Allows, page), started);
        }
        LogRequest(logger, context.Request.Path.Value, identity?.DeviceId ?? "-", context.Response.StatusCode, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    public async Task RetrieveAsync(HttpContext context, string id)
    {
        var started = Stopwatch.GetTimestamp();
        var identity = await authenticator.AuthenticateTokenAsync(context);
        if (identity is null)
        {
            metrics.Rejected("authentication");
        }
        else if (!policies.For(identity).Allows(id))
        {
            metrics.Rejected("model");
            await ApiErrors.WriteAsync(context, 404, "not_found_error", $"model: {id}");
        }
        else
        {
            await ForwardAsync(context, identity, transformer, started);
        }
        LogRequest(logger, context.Request.Path.Value, identity?.DeviceId ?? "-", context.Response.StatusCode, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private async Task ForwardAsync(HttpContext context, DeviceIdentity identity, HttpTransformer requestTransformer, long started)
    {
        if (upstream.IsBreaking)
        {
            await ForwarderErrors.WriteBreakerOpenAsync(context, upstream.RetryAfter, metrics);
            return;
        }
        var request = reservations.For(ApiRoute.Models, identity, policies.For(identity), body: null);
        var decision = await admission.AdmitAsync(request, context.RequestAborted);
        if (decision.Outcome != AdmissionOutcome.Admitted)
        {
            await refusals.WriteAsync(context, decision, request);
            return;
        }
        metrics.Admitted(ApiRoute.Models.Name());

        var firstByte = 0L;
        context.Response.OnStarting(() =>
        {
            firstByte = Stopwatch.GetTimestamp();
            return Task.CompletedTask;
        });
        var cancelled = false;
        try
        {
            var result = await upstream.SendAsync(context, requestTransformer);
            cancelled = ForwarderErrors.IsCancellation(result);
            if (result != ForwarderError.None)
            {
                await ForwarderErrors.WriteAsync(context, result, upstream, metrics, logger);
            }
            else
            {
                await context.Response.CompleteAsync();
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            cancelled = true;
        }
        finally
        {
            var usage = usageEvents.Build(context, ApiRoute.Models, identity, body: null, model: "", default, started, firstByte,
                cancelled || context.RequestAborted.IsCancellationRequested);
            usageSink.Enqueue(usage);
            metrics.Usage(usage.Model, 0, 0, usage.CostUsd, usage.LatencyMs / 1000, usage.TimeToFirstByteMs / 1000);
            admission.Settle(request, decision, 0, 0);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "GET {Path} device={DeviceId} model=- status={Status} duration_ms={DurationMs:0.###}")]
    private static partial void LogRequest(ILogger logger, string? path, string deviceId, int status, double durationMs);
}
