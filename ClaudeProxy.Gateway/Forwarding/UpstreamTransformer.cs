using ClaudeProxy.Gateway.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// Copies the request as it came (headers, <c>anthropic-*</c> verbatim, query string) but for the client's
/// credential, which is removed, and the master key, which is added. No <c>X-Forwarded-*</c> is added, and what an
/// ingress in front of the gateway added about the client's network (<c>X-Forwarded-*</c>, <c>Forwarded</c>,
/// <c>X-Real-IP</c>, and the <c>X-Original-*</c> copies the forwarded-headers middleware leaves) is not passed on.
/// Answers lose the headers that describe the company's own Anthropic organisation or set cookies for it.
/// </summary>
public sealed class UpstreamTransformer(GatewayOptions options) : HttpTransformer
{
    private static readonly string[] ClientNetworkHeaders =
        ["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix", "Forwarded", "X-Real-IP",
         "X-Original-For", "X-Original-Proto", "X-Original-Host"];

    private static readonly string[] OrganisationHeaders = ["anthropic-organization-id", "Set-Cookie"];

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        proxyRequest.Headers.Authorization = null;
        proxyRequest.Headers.Remove("x-api-key");
        proxyRequest.Headers.TryAddWithoutValidation("x-api-key", options.AnthropicApiKey);
        var incoming = httpContext.Request.Headers;
        foreach (var name in ClientNetworkHeaders)
        {
            if (incoming.ContainsKey(name))
            {
                proxyRequest.Headers.Remove(name);
            }
        }
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var proceed = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        var headers = httpContext.Response.Headers;
        foreach (var name in OrganisationHeaders)
        {
            headers.Remove(name);
        }
        return proceed;
    }
}
