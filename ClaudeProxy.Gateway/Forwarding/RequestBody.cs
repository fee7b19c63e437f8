using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The request body, read once into a pooled buffer that grows with the bytes actually received (never with what
/// the content-length promises), and scanned once with <see cref="Utf8JsonReader"/> for what the gateway decides on:
/// <c>model</c>, <c>max_tokens</c> (<c>max_tokens_to_sample</c> on <c>/v1/complete</c>), <c>stream</c> and the server
/// tools in <c>tools</c>. Each of those is validated here, before anything is reserved or forwarded. The bytes are
/// forwarded as read.
/// </summary>
public sealed class RequestBody : IDisposable
{
    /// <summary>The largest <c>max_tokens</c> accepted: far above any model's output limit, small enough to price.</summary>
    public const int MaxTokensCeiling = 1_000_000;

    /// <summary>The longest model id accepted.</summary>
    public const int MaxModelLength = 256;

    /// <summary>Web searches reserved for a web search tool that does not state <c>max_uses</c>.</summary>
    public const int DefaultServerToolUses = 10;

    private const int InitialBuffer = 16 * 1024;
    private const string ModelRule = "model: must be a string of at most 256 characters, each a letter, a digit or one of . - _ : @ /";
    private static readonly SearchValues<byte> ModelBytes =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:@/"u8);

    private byte[]? _buffer;

    private RequestBody(byte[] buffer, int length)
    {
        _buffer = buffer;
        Length = length;
    }

    public int Length { get; }
    public string? Model { get; private set; }

    /// <summary><c>max_tokens</c>, validated: null when absent.</summary>
    public int? MaxTokens { get; private set; }

    /// <summary><c>max_tokens_to_sample</c> (the legacy completions API), validated: null when absent.</summary>
    public int? MaxTokensToSample { get; private set; }

    public bool Stream { get; private set; }

    /// <summary>Web searches the request's server tools allow: each tool's <c>max_uses</c>, or <see cref="DefaultServerToolUses"/>.</summary>
    public long WebSearches { get; private set; }

    /// <summary>Input tokens web fetches may add, where a web fetch tool states <c>max_content_tokens</c>.</summary>
    public long WebFetchTokens { get; private set; }

    public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, Length);

    public Stream AsStream() => new MemoryStream(_buffer!, 0, Length, writable: false);

    /// <summary>The output limit the route uses.</summary>
    public int? OutputLimit(ApiRoute route) => route == ApiRoute.Complete ? MaxTokensToSample : MaxTokens;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads and scans the body; on failure returns the status and message for the client.</summary>
    public static async ValueTask<(RequestBody? Body, int Status, string? Error)> ReadAsync(HttpContext context, long maxBytes,
        ApiRoute route = ApiRoute.Messages)
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
        // Start small whatever the content-length says: a slow or lying client holds only what it has sent.
        var buffer = ArrayPool<byte>.Shared.Rent(declared is long d ? (int)Math.Clamp(d, 1, InitialBuffer) : InitialBuffer);
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
        if (body.Scan(route) is { } error)
        {
            body.Dispose();
            return (null, 400, error);
        }
        return (body, 200, null);
    }

    private static string TooLarge(long maxBytes) => $"request body is larger than the gateway's limit of {maxBytes} bytes";

    private static string TokensRule(string field) => $"{field}: must be a whole number from 1 to {MaxTokensCeiling}";

    private string? Scan(ApiRoute route)
    {
        var reader = new Utf8JsonReader(Span, new JsonReaderOptions { MaxDepth = 256 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return "request body must be a JSON object";
            }
            // A key given twice is read twice, and the last one counts, as it does upstream.
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("model"u8))
                {
                    reader.Read();
                    Model = ReadModel(ref reader);
                    if (Model is null)
                    {
                        return ModelRule;
                    }
                }
                else if (reader.ValueTextEquals("max_tokens"u8))
                {
                    reader.Read();
                    MaxTokens = PositiveInteger(ref reader);
                    if (MaxTokens is null)
                    {
                        return TokensRule("max_tokens");
                    }
                }
                else if (reader.ValueTextEquals("max_tokens_to_sample"u8))
                {
                    reader.Read();
                    MaxTokensToSample = PositiveInteger(ref reader);
                    if (MaxTokensToSample is null)
                    {
                        return TokensRule("max_tokens_to_sample");
                    }
                }
                else if (reader.ValueTextEquals("stream"u8))
                {
                    reader.Read();
                    Stream = reader.TokenType == JsonTokenType.True;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("tools"u8))
                {
                    reader.Read();
                    if (ScanTools(ref reader) is { } error)
                    {
                        return error;
                    }
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
        if (Model is null)
        {
            return "model: Field required";
        }
        return route switch
        {
            ApiRoute.Messages when MaxTokens is null => "max_tokens: Field required",
            ApiRoute.Complete when MaxTokensToSample is null => "max_tokens_to_sample: Field required",
            _ => null,
        };
    }

    /// <summary>The model id, or null when it is not a string of the allowed characters and length.</summary>
    private static string? ReadModel(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            reader.Skip();
            return null;
        }
        if (!reader.ValueIsEscaped)
        {
            var raw = reader.ValueSpan;
            return raw.Length is > 0 and <= MaxModelLength && !raw.ContainsAnyExcept(ModelBytes) ? reader.GetString() : null;
        }
        // An escaped id (\u0041 for A) is judged by what it decodes to; an escape is at most six bytes.
        if (reader.ValueSpan.Length > MaxModelLength * 6)
        {
            return null;
        }
        Span<byte> decoded = stackalloc byte[MaxModelLength * 6];
        var length = reader.CopyString(decoded);
        return length is > 0 and <= MaxModelLength && !decoded[..length].ContainsAnyExcept(ModelBytes) ? reader.GetString() : null;
    }

    /// <summary>A JSON number that is a whole number from 1 to <see cref="MaxTokensCeiling"/> (1000, 1.0e3), else null.</summary>
    private static int? PositiveInteger(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.Number)
        {
            reader.Skip();
            return null;
        }
        if (reader.TryGetInt32(out var whole))
        {
            return whole is >= 1 and <= MaxTokensCeiling ? whole : null;
        }
        return reader.TryGetDecimal(out var value) && value == decimal.Truncate(value) && value is >= 1 and <= MaxTokensCeiling ? (int)value : null;
    }

    /// <summary>
    /// Sums what the server tools in <c>tools</c> may cost beyond tokens: web searches (each tool's <c>max_uses</c>, or
    /// <see cref="DefaultServerToolUses"/>) and the content web fetches may add (<c>max_uses</c> × <c>max_content_tokens</c>).
    /// Other tools are skipped unread.
    /// </summary>
    private string? ScanTools(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            reader.Skip();
            return null;
        }
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }
            var kind = ServerTool.None;
            long? maxUses = null, maxContent = null;
            bool badUses = false, badContent = false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("type"u8))
                {
                    reader.Read();
                    kind = Classify(ref reader);
                }
                else if (reader.ValueTextEquals("max_uses"u8))
                {
                    reader.Read();
                    maxUses = PositiveInteger(ref reader);
                    badUses = maxUses is null;
                }
                else if (reader.ValueTextEquals("max_content_tokens"u8))
                {
                    reader.Read();
                    maxContent = PositiveInteger(ref reader);
                    badContent = maxContent is null;
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
            if (kind == ServerTool.None)
            {
                continue;
            }
            if (badUses)
            {
                return TokensRule("tools.max_uses");
            }
            if (badContent)
            {
                return TokensRule("tools.max_content_tokens");
            }
            var uses = maxUses ?? DefaultServerToolUses;
            if (kind == ServerTool.WebSearch)
            {
                WebSearches += uses;
            }
            else if (maxContent is long content)
            {
                WebFetchTokens += uses * content;
            }
        }
        return null;
    }

    private enum ServerTool : byte { None, WebSearch, WebFetch }

    private static ServerTool Classify(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            reader.Skip();
            return ServerTool.None;
        }
        // An escape spells one byte in at most six, so any type of up to 64 bytes, however it is escaped, is decoded;
        // a longer one is no server tool Anthropic knows.
        Span<byte> decoded = stackalloc byte[64 * 6];
        scoped ReadOnlySpan<byte> type = reader.ValueSpan;
        if (reader.ValueIsEscaped)
        {
            if (type.Length > decoded.Length)
            {
                return ServerTool.None;
            }
            type = decoded[..reader.CopyString(decoded)];
        }
        return type.StartsWith("web_search_"u8) ? ServerTool.WebSearch
            : type.StartsWith("web_fetch_"u8) ? ServerTool.WebFetch
            : ServerTool.None;
    }
}
