using System.Net;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The one HTTP client towards Anthropic: no proxy, no redirects, no decompression (bytes pass as they come), no
/// cookies, no trace headers added, and no resilience handler (its attempt timeout would cut long generations).
/// </summary>
public sealed class UpstreamClient : IDisposable
{
    public UpstreamClient(IEnumerable<DelegatingHandler> handlers)
    {
        HttpMessageHandler handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ActivityHeadersPropagator = null,
            ConnectTimeout = TimeSpan.FromSeconds(15),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
            MaxConnectionsPerServer = int.MaxValue,
        };
        foreach (var outer in handlers.Reverse())
        {
            outer.InnerHandler = handler;
            handler = outer;
        }
        Invoker = new HttpMessageInvoker(handler, disposeHandler: true);
    }

    public HttpMessageInvoker Invoker { get; }

    public void Dispose() => Invoker.Dispose();
}
