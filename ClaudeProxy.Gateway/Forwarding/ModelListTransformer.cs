using System.Buffers;
using System.IO.Compression;
using System.Net;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.AspNetCore.Http.Extensions;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The upstream call of <c>GET /v1/models</c>: the request goes as <see cref="UpstreamTransformer"/> sends any
/// other, but asks Anthropic for its whole list (<c>limit=1000</c>, the API's most, without the caller's cursors) and
/// uncompressed; a 200 is answered with the caller's page of it (<see cref="ModelList"/>). Any other answer passes as
/// it came, like every upstream error.
/// </summary>
public sealed class ModelListTransformer(UpstreamTransformer inner, Func<string, bool> allows, ModelPage page) : HttpTransformer
{
    // Anthropic's whole list with every capability of every model is tens of kilobytes.
    private const int MaxListBytes = 8 * 1024 * 1024;

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix,
        CancellationToken cancellationToken)
    {
        await inner.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        var query = new QueryBuilder(httpContext.Request.Query.Where(p => !ModelPage.Parameters.Contains(p.Key, StringComparer.OrdinalIgnoreCase)))
        {
            { "limit", ModelPage.MaxLimit.ToString(System.Globalization.CultureInfo.InvariantCulture) },
        };
        proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, httpContext.Request.Path, query.ToQueryString());
        proxyRequest.Headers.AcceptEncoding.Clear();
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse,
        CancellationToken cancellationToken)
    {
        var proceed = await inner.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (!proceed || proxyResponse is not { StatusCode: HttpStatusCode.OK })
        {
            return proceed;
        }
        var response = httpContext.Response;
        response.Headers.ContentEncoding = default;
        var list = await ReadAsync(proxyResponse.Content, cancellationToken);
        var output = new ArrayBufferWriter<byte>(4096);
        if (list is null || !ModelList.TryWrite(list.Value, allows, page, output))
        {
            await ApiErrors.WriteAsync(httpContext, 502, "api_error", "the Anthropic API answered GET /v1/models with something other than a list of models");
            return false;
        }
        response.ContentType = "application/json";
        response.ContentLength = output.WrittenCount;
        await response.Body.WriteAsync(output.WrittenMemory, cancellationToken);
        return false;
    }

    /// <summary>The upstream list, decoded if it came compressed after all; null when it is unreadable or too large.</summary>
    private static async Task<ReadOnlyMemory<byte>?> ReadAsync(HttpContent content, CancellationToken cancellationToken)
    {
        try
        {
            await using var raw = await content.ReadAsStreamAsync(cancellationToken);
            await using Stream? decoded = content.Headers.ContentEncoding.LastOrDefault()?.ToLowerInvariant() switch
            {
                null or "identity" => raw,
                "gzip" => new GZipStream(raw, CompressionMode.Decompress, leaveOpen: true),
                "deflate" => new ZLibStream(raw, CompressionMode.Decompress, leaveOpen: true),
                "br" => new BrotliStream(raw, CompressionMode.Decompress, leaveOpen: true),
                _ => null,
            };
            if (decoded is null || content.Headers.ContentEncoding.Count > 1)
            {
                return null;
            }
            using var buffer = new MemoryStream();
            await new LimitedStream(decoded, MaxListBytes).CopyToAsync(buffer, cancellationToken);
            return buffer.ToArray();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or HttpRequestException or LimitedStream.TooLargeException)
        {
            return null;
        }
    }
}
