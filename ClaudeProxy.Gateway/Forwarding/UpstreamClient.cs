using System.Net;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The one HTTP client towards Anthropic: no proxy, no redirects, no decompression (bytes pass as they come), no
/// cookies, no trace headers added, and no standard resilience handler (its attempt timeout would cut long
/// generations): only the circuit breaker, which times the wait for response headers alone.
/// </summary>
public sealed class UpstreamClient : IDisposable
{
    public UpstreamClient(UpstreamCircuitBreaker breaker)
    {
        var sockets = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            // Injects nothing, yet keeps the handler's client span (a null propagator removes the span as well).
            ActivityHeadersPropagator = System.Diagnostics.DistributedContextPropagator.CreateNoOutputPropagator(),
            ConnectTimeout = TimeSpan.FromSeconds(15),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
            MaxConnectionsPerServer = int.MaxValue,
        };
        Invoker = new HttpMessageInvoker(new CircuitBreakerHandler(breaker) { InnerHandler = sockets }, disposeHandler: true);
    }

    public HttpMessageInvoker Invoker { get; }

    public void Dispose() => Invoker.Dispose();
}
