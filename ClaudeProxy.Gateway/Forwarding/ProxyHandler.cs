using System.Diagnostics;
using System.Globalization;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// One request through the gateway: authenticate, read the body once, check the model, admit under the
/// device's limits, forward with the master key, and log the outcome.
/// </summary>
public sealed partial class ProxyHandler(
    GatewayOptions options,
    TokenService tokens,
    IRateLimiter limiter,
    IHttpForwarder forwarder,
    UpstreamClient upstream,
    UpstreamTransformer transformer,
    ILogger<ProxyHandler> logger)
{
    private readonly string _destination = options.AnthropicBaseUrl.ToString().TrimEnd('/');
    private readonly ForwarderRequestConfig _requestConfig = new() { ActivityTimeout = options.UpstreamTimeout };

    public async Task HandleAsync(HttpContext context, ApiRoute route)
    {
        var started = Stopwatch.GetTimestamp();
        string? deviceId = null;
        string? model = null;
        RequestBody? body = null;
        try
        {
            var check = await tokens.ValidateAsync(CredentialReader.Read(context.Request));
            if (check.Status != TokenStatus.Valid)
            {
                await ApiErrors.WriteAsync(context, 401, check.Status switch
                {
                    TokenStatus.Missing => "missing wrapper token: send it as Authorization: Bearer or x-api-key",
                    TokenStatus.Expired => "wrapper token has expired: refresh it with POST /refresh or bootstrap again",
                    _ => "invalid wrapper token",
                });
                return;
            }
            var identity = check.Identity!;
            deviceId = identity.DeviceId;

            if (route.HasBody())
            {
                (body, var status, var error) = await RequestBody.ReadAsync(context, options.MaxPayloadSize);
                if (body is null)
                {
                    await ApiErrors.WriteAsync(context, status, error!);
                    return;
                }
                model = body.Model!;
                if (!identity.Models.Allows(model))
                {
                    await ApiErrors.WriteAsync(context, 403, $"model '{model}' is not allowed for this device");
                    return;
                }
            }

            var decision = await limiter.AcquireAsync(identity.DeviceId, identity.RateLimit, options.RateLimitWindow, context.RequestAborted);
            if (!decision.Allowed)
            {
                WriteRateHeaders(context, decision);
                await ApiErrors.WriteAsync(context, 429, $"rate limit of {decision.Limit} requests per {options.RateLimitWindow.TotalSeconds:0.###} s reached for this device");
                return;
            }

            if (body is not null)
            {
                context.Request.Body = body.AsStream();
                context.Request.ContentLength = body.Length;
                context.Request.Headers.TransferEncoding = default;
            }
            var result = await forwarder.SendAsync(context, _destination, upstream.Invoker, _requestConfig, transformer, context.RequestAborted);
            if (result != ForwarderError.None)
            {
                await HandleForwarderErrorAsync(context, result);
            }
        }
        finally
        {
            body?.Dispose();
            LogRequest(logger, context.Request.Method, context.Request.Path.Value, deviceId ?? "-", model ?? "-", context.Response.StatusCode,
                Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    private async Task HandleForwarderErrorAsync(HttpContext context, ForwarderError error)
    {
        var exception = context.GetForwarderErrorFeature()?.Exception;
        switch (error)
        {
            case ForwarderError.RequestTimedOut:
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                await ApiErrors.WriteAsync(context, 504, "timeout_error", "the Anthropic API did not answer in time");
                break;
            case ForwarderError.Request or ForwarderError.RequestCreation or ForwarderError.NoAvailableDestinations:
                LogUpstreamFailure(logger, error, exception?.GetType().Name);
                await ApiErrors.WriteAsync(context, 502, "api_error", "the gateway could not reach the Anthropic API");
                break;
            default:
                // Client disconnects and failures after the response started: nothing more can be said to the client.
                if (error is not (ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.ResponseBodyCanceled))
                {
                    LogUpstreamFailure(logger, error, exception?.GetType().Name);
                }
                break;
        }
    }

    internal static void WriteRateHeaders(HttpContext context, RateDecision decision)
    {
        var headers = context.Response.Headers;
        var seconds = Math.Max(1, (int)Math.Ceiling(decision.RetryAfter.TotalSeconds));
        headers["retry-after"] = seconds.ToString(CultureInfo.InvariantCulture);
        headers["anthropic-ratelimit-requests-limit"] = decision.Limit.ToString(CultureInfo.InvariantCulture);
        headers["anthropic-ratelimit-requests-remaining"] = decision.Remaining.ToString(CultureInfo.InvariantCulture);
        headers["anthropic-ratelimit-requests-reset"] = decision.ResetAt.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Method} {Path} device={DeviceId} model={Model} status={Status} duration_ms={DurationMs:0.###}")]
    private static partial void LogRequest(ILogger logger, string method, string? path, string deviceId, string model, int status, double durationMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream request failed: {Error} ({ExceptionType})")]
    private static partial void LogUpstreamFailure(ILogger logger, ForwarderError error, string? exceptionType);
}
