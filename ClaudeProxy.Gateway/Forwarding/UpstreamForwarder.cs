using ClaudeProxy.Gateway.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// Sends an admitted request to Anthropic with YARP's forwarder, through the one upstream client (and so through the
/// circuit breaker), with the master key put in by <see cref="UpstreamTransformer"/>.
/// </summary>
public sealed class UpstreamForwarder(IHttpForwarder forwarder, UpstreamClient client, UpstreamTransformer transformer, UpstreamCircuitBreaker breaker,
    GatewayOptions options)
{
    private readonly string _destination = options.AnthropicBaseUrl.ToString().TrimEnd('/');
    // A little longer than the breaker's own timeout on the response headers, so that one fires first and counts.
    private readonly ForwarderRequestConfig _requestConfig = new() { ActivityTimeout = options.UpstreamTimeout + TimeSpan.FromSeconds(5) };

    /// <summary>The breaker is open and within its break: a request now would be refused without trying.</summary>
    public bool IsBreaking => breaker.IsBreaking;

    /// <summary>How long until an open breaker lets a probe through.</summary>
    public TimeSpan RetryAfter => breaker.RetryAfter;

    /// <summary>Forwards the request and copies the answer to the response as it comes; an error is for <see cref="ForwarderErrors"/>.</summary>
    public ValueTask<ForwarderError> SendAsync(HttpContext context) =>
        forwarder.SendAsync(context, _destination, client.Invoker, _requestConfig, transformer, context.RequestAborted);

    /// <summary>As <see cref="SendAsync(HttpContext)"/>, with a transformer of the route's own that builds on <see cref="UpstreamTransformer"/>.</summary>
    public ValueTask<ForwarderError> SendAsync(HttpContext context, HttpTransformer routeTransformer) =>
        forwarder.SendAsync(context, _destination, client.Invoker, _requestConfig, routeTransformer, context.RequestAborted);
}
