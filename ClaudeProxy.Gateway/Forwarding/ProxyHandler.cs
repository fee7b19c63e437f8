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
/// One request through the gateway: authenticate, read the body once, check the model, fail fast while the
/// breaker is open, admit under the device's limits and spend cap (one atomic step), forward with the master key
/// through the usage tap, then settle the reservation and record the usage event.
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
    private readonly string _destination = options.AnthropicBaseUrl.ToString().TrimEnd('/');
    // A little longer than the breaker's own timeout on the response headers, so that one fires first and counts.
    private readonly ForwarderRequestConfig _requestConfig = new() { ActivityTimeout = options.UpstreamTimeout + TimeSpan.FromSeconds(5) };

    public async Task HandleAsync(HttpContext context, ApiRoute route)
    {
        var started = Stopwatch.GetTimestamp();
        string? deviceId = null;
        string? model = null;
        RequestBody? body = null;
        try
        {
            var identity = await authenticator.AuthenticateTokenAsync(context);
            if (identity is null)
            {
                metrics.Rejected("authentication");
                return;
            }
            deviceId = identity.DeviceId;

            if (route.HasBody())
            {
                (body, var status, var error) = await RequestBody.ReadAsync(context, options.MaxPayloadSize);
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
    /// next admission for the device is ordered after it, but nobody waits for its answer.
    /// </summary>
    private void Record(HttpContext context, ApiRoute route, DeviceIdentity identity, RequestBody? body, string model,
        AdmissionRequest request, Admission decision, UsageTapStream tap, long started, bool cancelled)
    {
        var usage = tap.Complete();
        tap.Dispose();
        var counts = usage.Counts;
        var cost = counts.Any ? prices.Cost(model, counts) : 0m;
        if (cost is null && model.Length > 0)
        {
            WarnUnpriced(model);
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
            LatencyMs = elapsed.TotalMilliseconds,
            TimeToFirstByteMs = ttfb,
            UpstreamRequestId = Header(context.Response.Headers, "request-id"),
            CorrelationId = CorrelationId.Get(context),
            Cancelled = cancelled,
            StreamError = usage.StreamError,
        });
        metrics.Usage(model, counts.TotalInput, counts.Output ?? 0, cost, elapsed.TotalSeconds, ttfb / 1000);

        admission.Settle(request, decision, CeilMicros(cost ?? 0m), counts.TotalInput + (counts.Output ?? 0));
    }

    /// <summary>The worst case this request can cost, reserved against the cap before it is forwarded.</summary>
    private long Reservation(ApiRoute route, DeviceIdentity identity, RequestBody? body)
    {
        if (identity.SpendCap is null || body is null || route is not (ApiRoute.Messages or ApiRoute.Complete))
        {
            return 0;
        }
        // About four bytes of request per input token is a generous estimate for text; the answer is capped by max_tokens.
        var worst = prices.WorstCase(body.Model!, body.Length / 4 + 1, body.MaxTokens ?? 4096);
        return worst is decimal w ? CeilMicros(w) : 0;
    }

    /// <summary>Limits/Refusals says what each refusal looks like to the client.</summary>
    private Task WriteRefusalAsync(HttpContext context, Admission decision, AdmissionRequest request) =>
        Refusals.WriteAsync(context, decision, request, limitOptions.SpendPeriod, metrics, time);

    private async Task WriteBreakerOpenAsync(HttpContext context)
    {
        metrics.Rejected("circuit_open");
        context.Response.Headers["retry-after"] = Seconds(breaker.RetryAfter);
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

    private void WarnUnpriced(string model)
    {
        metrics.Unpriced(model);
        if (_unpriced.Count < 1000 && _unpriced.TryAdd(model, true))
        {
            LogUnpriced(logger, model);
        }
    }

    internal static void WriteRateHeaders(HttpContext context, RateDecision decision)
    {
        var headers = context.Response.Headers;
        headers["retry-after"] = Seconds(decision.RetryAfter);
        headers["anthropic-ratelimit-requests-limit"] = decision.Limit.ToString(CultureInfo.InvariantCulture);
        headers["anthropic-ratelimit-requests-remaining"] = decision.Remaining.ToString(CultureInfo.InvariantCulture);
        headers["anthropic-ratelimit-requests-reset"] = Rfc3339(decision.ResetAt);
    }

    private static string Seconds(TimeSpan span) => Math.Max(1, (int)Math.Ceiling(span.TotalSeconds)).ToString(CultureInfo.InvariantCulture);

    private static string Rfc3339(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static long Micros(decimal? usd) => usd is decimal d ? CeilMicros(d) : AdmissionRequest.NoCap;

    private static long CeilMicros(decimal usd) => (long)Math.Ceiling(usd * MicrosPerDollar);

    private static string? Header(HttpContext context, string name) => Header(context.Request.Headers, name);

    private static string? Header(IHeaderDictionary headers, string name) =>
        headers.TryGetValue(name, out var value) && value.ToString() is { Length: > 0 and <= 256 } s ? s : null;

    [LoggerMessage(Level = LogLevel.Information, Message = "{Method} {Path} device={DeviceId} model={Model} status={Status} duration_ms={DurationMs:0.###}")]
    private static partial void LogRequest(ILogger logger, string method, string? path, string deviceId, string model, int status, double durationMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream request failed: {Error} ({ExceptionType})")]
    private static partial void LogUpstreamFailure(ILogger logger, ForwarderError error, string? exceptionType);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model} has no price in the pricing file: its usage is recorded with a null cost")]
    private static partial void LogUnpriced(ILogger logger, string model);
}
