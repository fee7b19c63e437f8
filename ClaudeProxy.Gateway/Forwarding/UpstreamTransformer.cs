using ClaudeProxy.Gateway.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// Copies the request as it came (headers, <c>anthropic-*</c> verbatim, query string) but for the client's
/// credential, which is removed, and the master key, which is added. No <c>X-Forwarded-*</c> is added.
/// </summary>
public sealed class UpstreamTransformer(GatewayOptions options) : HttpTransformer
{
    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        proxyRequest.Headers.Authorization = null;
        proxyRequest.Headers.Remove("x-api-key");
        proxyRequest.Headers.TryAddWithoutValidation("x-api-key", options.AnthropicApiKey);
    }
}
