using System.Diagnostics;
using System.Globalization;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Gateway.Usage;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// One request through the gateway: authenticate, refuse at once a device known to be out of requests or with too
/// many in flight, read and validate the body once, check the model, fail fast while the breaker is open, admit under
/// the device's limits and spend cap (one atomic step), forward with the master key through the usage tap, then settle
/// the reservation and record the usage event.
/// </summary>
public sealed partial class ProxyHandler(
    GatewayOptions options,
    LimitOptions limitOptions,
    DeviceAuthenticator authenticator,
    AdmissionService admission,
    UpstreamCircuitBreaker breaker,
    PriceBook prices,
    IUsageSink usageSink,
    GatewayMetrics metrics,
    IHttpForwarder forwarder,
    UpstreamClient upstream,
    UpstreamTransformer transformer,
    TimeProvider time,
    ILogger<ProxyHandler> logger)
{
    private const long MicrosPerDollar = 1_000_000;
    private const int MaxUnpricedWarnings = 1000;
    private readonly string _destination = options.AnthropicBaseUrl.ToString().TrimEnd('/');
    // A little longer than the breaker's own timeout on the response headers, so that one fires first and counts.
    private readonly ForwarderRequestConfig _requestConfig = new() { ActivityTimeout = options.UpstreamTimeout + TimeSpan.FromSeconds(5) };
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
            var identity = await authenticator.AuthenticateTokenAsync(context);
            if (identity is null)
            {
                metrics.Rejected("authentication");
                return;
            }
            deviceId = identity.DeviceId;

            // Both refusals come before the body is read: a device that is refused anyway holds no buffer.
            if (_rateLimited.IsRefused(deviceId, identity.RateLimit, out var known))
            {
                metrics.Rejected(Refusals.Reason(AdmissionOutcome.RateLimited));
                await Refusals.WriteRateLimitedAsync(context, known, options.RateLimitWindow);
                return;
            }
            if (!(entered = _inFlight.TryEnter(deviceId)))
            {
                metrics.Rejected("concurrency");
                context.Response.Headers["retry-after"] = "1";
                await ApiErrors.WriteAsync(context, 429, "rate_limit_error",
                    $"this device already has {_inFlight.Limit} requests in flight on this gateway instance; retry when one has finished");
                return;
            }

            if (route.HasBody())
            {
                (body, var status, var error) = await RequestBody.ReadAsync(context, options.MaxPayloadSize, route);
                if (body is null)
                {
                    metrics.Rejected(status == 413 ? "too_large" : "invalid_request");
                    await ApiErrors.WriteAsync(context, status, error!);
                    return;
                }
                model = body.Model!;
                if (!identity.Models.Allows(model))
                {
                    metrics.Rejected("model");
                    await ApiErrors.WriteAsync(context, 403, $"model '{model}' is not allowed for this device");
                    return;
                }
            }

            if (breaker.IsBreaking)
            {
                await WriteBreakerOpenAsync(context);
                return;
            }

            var (periodStart, periodEnd, periodId) = SpendPeriods.Of(limitOptions.SpendPeriod, time.GetUtcNow());
            var reserve = Reservation(route, identity, body);
            var request = new AdmissionRequest(identity.DeviceId, identity.RateLimit, options.RateLimitWindow,
                identity.TokenLimit ?? limitOptions.TokenLimitPerMinute, Micros(identity.SpendCap), reserve, periodId, periodStart, periodEnd, identity.PolicyVersion);
            var decision = await admission.AdmitAsync(request, context.RequestAborted);
            _rateLimited.Observe(deviceId, decision);
            if (decision.Outcome != AdmissionOutcome.Admitted)
            {
                await WriteRefusalAsync(context, decision, request);
                return;
            }
            metrics.Admitted(route.Name());

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
                result = await forwarder.SendAsync(context, _destination, upstream.Invoker, _requestConfig, transformer, context.RequestAborted);
            }
            finally
            {
                context.Response.Body = responseBody;
            }
            cancelled = result is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.ResponseBodyCanceled;
            if (result != ForwarderError.None)
            {
                await HandleForwarderErrorAsync(context, result);
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
            // Whatever happened once the request may have reached Anthropic, it is recorded exactly once.
            Record(context, route, identity, body, model, request, decision, tap, started, cancelled || context.RequestAborted.IsCancellationRequested);
        }
    }

    /// <summary>
    /// Records what a forwarded request used: the usage event first (nothing may lose it), then the settlement of
    /// the reservation. The settlement is put on the Redis connection before the request ends, so this instance's
    /// next admission for the device is ordered after it, but nobody waits for its answer. An answer that ended before
    /// its final usage is charged its estimated output; a model without a price is charged at the highest prices.
    /// </summary>
    private void Record(HttpContext context, ApiRoute route, DeviceIdentity identity, RequestBody? body, string model,
        AdmissionRequest request, Admission decision, UsageTapStream tap, long started, bool cancelled)
    {
        var usage = tap.Complete();
        tap.Dispose();
        var counts = usage.Counts;
        if (usage.OutputEstimated && counts.Input is null && body is not null)
        {
            // The legacy completions API reports no usage at all: its input is the same estimate the reservation made.
            counts.Input = InputEstimate(body);
        }
        var cost = 0m;
        var costEstimated = false;
        if (counts.Any)
        {
            cost = prices.Charge(model, counts, out costEstimated);
            if (costEstimated && model.Length > 0)
            {
                WarnUnpriced(model);
            }
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        double? ttfb = tap.FirstByteTimestamp > 0 ? Stopwatch.GetElapsedTime(started, tap.FirstByteTimestamp).TotalMilliseconds : null;

        usageSink.Enqueue(new UsageEvent
        {
            Id = Guid.CreateVersion7(),
            Time = time.GetUtcNow(),
            DeviceId = identity.DeviceId,
            UserId = identity.UserId,
            OrgId = identity.OrgId,
            SessionId = Header(context, "x-claude-code-session-id"),
            AgentId = Header(context, "x-claude-code-agent-id"),
            Model = model,
            Endpoint = route.Name(),
            Status = context.Response.StatusCode,
            Streamed = body?.Stream == true || (context.Response.ContentType?.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) ?? false),
            InputTokens = counts.Input ?? 0,
            OutputTokens = counts.Output ?? 0,
            CacheWrite5mTokens = counts.Write5m,
            CacheWrite1hTokens = counts.Write1h,
            CacheReadTokens = counts.CacheRead ?? 0,
            WebSearchRequests = counts.WebSearches ?? 0,
            WebFetchRequests = counts.WebFetches ?? 0,
            CostUsd = cost,
            CostEstimated = costEstimated,
            OutputEstimated = usage.OutputEstimated,
            LatencyMs = elapsed.TotalMilliseconds,
            TimeToFirstByteMs = ttfb,
            UpstreamRequestId = Header(context.Response.Headers, "request-id"),
            CorrelationId = CorrelationId.Get(context),
            Cancelled = cancelled,
            StreamError = usage.StreamError,
        });
        metrics.Usage(model, counts.TotalInput, counts.Output ?? 0, cost, elapsed.TotalSeconds, ttfb / 1000);

        admission.Settle(request, decision, CeilMicros(cost), counts.TotalInput + (counts.Output ?? 0));
    }

    /// <summary>
    /// The worst case this request can cost, reserved against the cap before it is forwarded: the estimated input,
    /// the content web fetches may add and <c>max_tokens</c> of output at the model's prices (the highest prices when
    /// it has none), plus every web search its tools allow. The body was validated, so none of these is negative.
    /// </summary>
    private long Reservation(ApiRoute route, DeviceIdentity identity, RequestBody? body)
    {
        if (identity.SpendCap is null || body is null || route is not (ApiRoute.Messages or ApiRoute.Complete))
        {
            return 0;
        }
        var worst = prices.WorstCase(body.Model!, InputEstimate(body) + body.WebFetchTokens, body.OutputLimit(route) ?? 0, body.WebSearches);
        return Math.Max(0, CeilMicros(worst));
    }

    /// <summary>About four bytes of request per input token: generous for text, very generous for images.</summary>
    private static long InputEstimate(RequestBody body) => body.Length / 4 + 1;

    /// <summary>Limits/Refusals says what each refusal looks like to the client.</summary>
    private Task WriteRefusalAsync(HttpContext context, Admission decision, AdmissionRequest request) =>
        Refusals.WriteAsync(context, decision, request, limitOptions.SpendPeriod, metrics, time);

    private async Task WriteBreakerOpenAsync(HttpContext context)
    {
        metrics.Rejected("circuit_open");
        context.Response.Headers["retry-after"] = Refusals.WholeSeconds(breaker.RetryAfter);
        await ApiErrors.WriteAsync(context, 529, "overloaded_error", "the Anthropic API is failing; the gateway's circuit breaker is open, retry later");
    }

    private async Task HandleForwarderErrorAsync(HttpContext context, ForwarderError error)
    {
        var exception = context.GetForwarderErrorFeature()?.Exception;
        if (exception is BrokenCircuitException or IsolatedCircuitException)
        {
            await WriteBreakerOpenAsync(context);
            return;
        }
        switch (error)
        {
            case ForwarderError.RequestTimedOut:
            case ForwarderError.Request when exception is Polly.Timeout.TimeoutRejectedException:
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                await ApiErrors.WriteAsync(context, 504, "timeout_error", "the Anthropic API did not answer in time");
                break;
            case ForwarderError.Request or ForwarderError.RequestCreation or ForwarderError.NoAvailableDestinations:
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                await ApiErrors.WriteAsync(context, 502, "api_error", "the gateway could not reach the Anthropic API");
                break;
            case ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.ResponseBodyCanceled:
                // The client went away; the upstream request was cancelled with it.
                break;
            default:
                // The answer had started: nothing more can be said to the client.
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                break;
        }
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _unpriced = new(StringComparer.Ordinal);
    private int _unpricedWarnings;

    /// <summary>Warns once per unpriced model, for the first <see cref="MaxUnpricedWarnings"/> models only.</summary>
    private void WarnUnpriced(string model)
    {
        metrics.Unpriced(model);
        if (Volatile.Read(ref _unpricedWarnings) < MaxUnpricedWarnings && !_unpriced.ContainsKey(model)
            && Interlocked.Increment(ref _unpricedWarnings) <= MaxUnpricedWarnings && _unpriced.TryAdd(model, true))
        {
            LogUnpriced(logger, model);
        }
    }


    private static long Micros(decimal? usd) => usd is decimal d ? CeilMicros(d) : AdmissionRequest.NoCap;

    // Clamped: a hostile body's absurd worst case is refused by any cap, never an overflow.
    private static long CeilMicros(decimal usd) => usd >= long.MaxValue / MicrosPerDollar ? long.MaxValue / 2 : (long)Math.Ceiling(usd * MicrosPerDollar);

    private static string? Header(HttpContext context, string name) => Header(context.Request.Headers, name);

    private static string? Header(IHeaderDictionary headers, string name) =>
        headers.TryGetValue(name, out var value) && value.ToString() is { Length: > 0 and <= 256 } s ? s : null;

    [LoggerMessage(Level = LogLevel.Information, Message = "{Method} {Path} device={DeviceId} model={Model} status={Status} duration_ms={DurationMs:0.###}")]
    private static partial void LogRequest(ILogger logger, string method, string? path, string deviceId, string model, int status, double durationMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream request failed: {Error} ({ExceptionType})")]
    private static partial void LogUpstreamFailure(ILogger logger, ForwarderError error, string? exceptionType);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model} has no price in the pricing file: it is charged at the highest prices, and its cost is marked estimated")]
    private static partial void LogUnpriced(ILogger logger, string model);
}
