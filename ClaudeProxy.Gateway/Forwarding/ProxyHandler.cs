using System.Diagnostics;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Gateway.Usage;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// One request through the gateway, its stages in order, each a plain call to the type of its concern:
/// authenticate (Tokens), read the body (<see cref="RequestBody"/>), validate it (<see cref="RequestValidation"/>),
/// standing and admission under the device's limits and spend cap (Limits, one atomic step; <see cref="Reservations"/>
/// says what to reserve, <see cref="Refusals"/> what to answer), forward with the master key
/// (<see cref="UpstreamForwarder"/>, <see cref="ForwarderErrors"/>) through the usage tap (<see cref="UsageTapStream"/>),
/// then record the usage event (<see cref="UsageEventBuilder"/>) and settle the reservation.
/// </summary>
public sealed partial class ProxyHandler(
    GatewayOptions options,
    DeviceAuthenticator authenticator,
    Reservations reservations,
    Policies.PolicyResolver policies,
    AdmissionService admission,
    Refusals refusals,
    UpstreamForwarder upstream,
    UsageEventBuilder usageEvents,
    IUsageSink usageSink,
    GatewayMetrics metrics,
    TimeProvider time,
    ILogger<ProxyHandler> logger)
{
    private readonly DeviceConcurrency _inFlight = new(options.MaxConcurrentRequestsPerDevice);
    private readonly RateLimitedDevices _rateLimited = new(time);

    /// <summary>Requests in flight per device on this instance.</summary>
    internal DeviceConcurrency InFlight => _inFlight;

    public async Task HandleAsync(HttpContext context, ApiRoute route)
    {
        var started = Stopwatch.GetTimestamp();
        string? deviceId = null;
        string? model = null;
        RequestBody? body = null;
        var entered = false;
        try
        {
            // Authenticate: the token alone; the device's standing is checked by admission, in the same round trip as its limits.
            var identity = await authenticator.AuthenticateTokenAsync(context);
            if (identity is null)
            {
                metrics.Rejected("authentication");
                return;
            }
            deviceId = identity.DeviceId;
            // The most restrictive of the token's policy, its groups' and the organisation's (worked out once per token).
            var policy = policies.For(identity);

            // Both refusals come before the body is read: a device that is refused anyway holds no buffer.
            if (_rateLimited.IsRefused(deviceId, policy.RateLimit, out var known))
            {
                await refusals.WriteKnownRateLimitedAsync(context, known);
                return;
            }
            if (!(entered = _inFlight.TryEnter(deviceId)))
            {
                await refusals.WriteTooManyInFlightAsync(context, _inFlight.Limit);
                return;
            }

            // Read the body once, and validate it and the model before anything is reserved.
            if (route.HasBody())
            {
                (body, var status, var error) = await RequestBody.ReadAsync(context, options.MaxPayloadSize, route);
                if (body is null)
                {
                    await RequestValidation.RefuseBodyAsync(context, status, error!, metrics);
                    return;
                }
                model = body.Model!;
                if (!policy.Allows(model))
                {
                    await RequestValidation.RefuseModelAsync(context, model, metrics);
                    return;
                }
            }

            if (upstream.IsBreaking)
            {
                await ForwarderErrors.WriteBreakerOpenAsync(context, upstream.RetryAfter, metrics);
                return;
            }

            // Standing and admission: standing, request limit, token budget and spend reservation in one atomic step.
            var request = reservations.For(route, identity, policy, body);
            var decision = await admission.AdmitAsync(request, context.RequestAborted);
            _rateLimited.Observe(deviceId, decision);
            var unified = request.Caps.Length > 0 && SpendLimitHeaders.Applies(context, identity);
            if (decision.Outcome != AdmissionOutcome.Admitted)
            {
                await refusals.WriteAsync(context, decision, request, unified);
                return;
            }
            metrics.Admitted(route.Name());
            if (unified)
            {
                SpendLimitHeaders.WriteAdmitted(context.Response, request, decision);
            }

            await ForwardAsync(context, route, identity, body, model ?? "", request, decision, started);
        }
        finally
        {
            if (entered)
            {
                _inFlight.Exit(deviceId!);
            }
            body?.Dispose();
            LogRequest(logger, context.Request.Method, context.Request.Path.Value, deviceId ?? "-", model ?? "-", context.Response.StatusCode,
                Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    /// <summary>Forward through the usage tap; whatever happens once the request may have reached Anthropic, record and settle it exactly once.</summary>
    private async Task ForwardAsync(HttpContext context, ApiRoute route, DeviceIdentity identity, RequestBody? body, string model,
        AdmissionRequest request, Admission decision, long started)
    {
        if (body is not null)
        {
            context.Request.Body = body.AsStream();
            context.Request.ContentLength = body.Length;
            context.Request.Headers.TransferEncoding = default;
        }
        var responseBody = context.Response.Body;
        var tap = new UsageTapStream(responseBody, context.Response);
        context.Response.Body = tap;
        var cancelled = false;
        try
        {
            ForwarderError result;
            try
            {
                result = await upstream.SendAsync(context);
            }
            finally
            {
                context.Response.Body = responseBody;
            }
            cancelled = ForwarderErrors.IsCancellation(result);
            if (result != ForwarderError.None)
            {
                await ForwarderErrors.WriteAsync(context, result, upstream, metrics, logger);
            }
            else
            {
                // Finish the response before the bookkeeping below, so that not even the last chunk waits for it.
                await context.Response.CompleteAsync();
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The client left while the last bytes were on their way: the request still happened and still counts.
            cancelled = true;
        }
        finally
        {
            var usage = tap.Complete();
            tap.Dispose();
            RecordAndSettle(usageEvents.Build(context, route, identity, body, model, usage, started, tap.FirstByteTimestamp,
                cancelled || context.RequestAborted.IsCancellationRequested), request, decision);
        }
    }

    /// <summary>
    /// The usage event first (nothing may lose it), then the settlement of the reservation, handed over without
    /// waiting: the device's next admission on this instance carries it to Redis, or it goes on its own shortly after.
    /// </summary>
    private void RecordAndSettle(UsageEvent usage, AdmissionRequest request, Admission decision)
    {
        usageSink.Enqueue(usage);
        var input = UsageEventBuilder.TotalInput(usage);
        metrics.Usage(usage.Model, input, usage.OutputTokens, usage.CostUsd, usage.LatencyMs / 1000, usage.TimeToFirstByteMs / 1000);
        admission.Settle(request, decision, Reservations.CeilMicros(usage.CostUsd ?? 0), input + usage.OutputTokens);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Method} {Path} device={DeviceId} model={Model} status={Status} duration_ms={DurationMs:0.###}")]
    private static partial void LogRequest(ILogger logger, string method, string? path, string deviceId, string model, int status, double durationMs);
}
