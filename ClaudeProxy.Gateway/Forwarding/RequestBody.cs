using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The request body, read once into a pooled buffer under the size limit and scanned once with
/// <see cref="Utf8JsonReader"/> for <c>model</c>, <c>max_tokens</c> and <c>stream</c>. The bytes are forwarded as read.
/// </summary>
public sealed class RequestBody : IDisposable
{
    private byte[]? _buffer;

    private RequestBody(byte[] buffer, int length)
    {
        _buffer = buffer;
        Length = length;
    }

    public int Length { get; }
    public string? Model { get; private set; }
    public int? MaxTokens { get; private set; }
    public bool Stream { get; private set; }
    public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, Length);

    public Stream AsStream() => new MemoryStream(_buffer!, 0, Length, writable: false);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads and scans the body; on failure returns the status and message for the client.</summary>
    public static async ValueTask<(RequestBody? Body, int Status, string? Error)> ReadAsync(HttpContext context, long maxBytes)
    {
        var declared = context.Request.ContentLength;
        if (declared > maxBytes)
        {
            return (null, 413, TooLarge(maxBytes));
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeFeature)
        {
            sizeFeature.MaxRequestBodySize = null;
        }
        var buffer = ArrayPool<byte>.Shared.Rent(declared is long d ? (int)Math.Max(d, 1) : 16 * 1024);
        var length = 0;
        try
        {
            var stream = context.Request.Body;
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length > maxBytes)
                    {
                        break;
                    }
                    var bigger = ArrayPool<byte>.Shared.Rent((int)Math.Min((long)buffer.Length * 2, maxBytes + 1));
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = bigger;
                }
                var read = await stream.ReadAsync(buffer.AsMemory(length), context.RequestAborted);
                if (read == 0)
                {
                    break;
                }
                length += read;
                if (length > maxBytes)
                {
                    break;
                }
            }
        }
        catch (BadHttpRequestException e)
        {
            // Shorter than its content-length, or otherwise unreadable: nothing is forwarded or recorded.
            ArrayPool<byte>.Shared.Return(buffer);
            return (null, e.StatusCode, "the request body could not be read: " + e.Message);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
        var body = new RequestBody(buffer, length);
        if (length > maxBytes)
        {
            body.Dispose();
            return (null, 413, TooLarge(maxBytes));
        }
        if (body.Scan() is { } error)
        {
            body.Dispose();
            return (null, 400, error);
        }
        return (body, 200, null);
    }

    private static string TooLarge(long maxBytes) => $"request body is larger than the gateway's limit of {maxBytes} bytes";

    private string? Scan()
    {
        var reader = new Utf8JsonReader(Span, new JsonReaderOptions { MaxDepth = 256 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return "request body must be a JSON object";
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("model"u8))
                {
                    reader.Read();
                    Model = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("max_tokens"u8))
                {
                    reader.Read();
                    MaxTokens = reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var maxTokens) ? maxTokens : null;
                }
                else if (reader.ValueTextEquals("stream"u8))
                {
                    reader.Read();
                    Stream = reader.TokenType == JsonTokenType.True;
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
            if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
            {
                return "request body is not valid JSON";
            }
        }
        catch (JsonException)
        {
            return "request body is not valid JSON";
        }
        return string.IsNullOrEmpty(Model) ? "model: Field required" : null;
    }
}
