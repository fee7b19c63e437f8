using System.Buffers;
using System.Text.Json;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// Reads Anthropic usage out of JSON tokens without allocating: a path of up to four known property names is kept,
/// and numbers are assigned by where they stand. Shared by the SSE and the JSON parsers. Output text is measured as it
/// passes (<see cref="Text"/>): <c>delta.text</c>, <c>delta.thinking</c> and <c>delta.partial_json</c> of a stream
/// event, <c>content[].text</c> and <c>content[].thinking</c> of a JSON message, and <c>completion</c> of the legacy
/// completions API.
/// </summary>
internal struct UsageJson
{
    private enum Name : byte
    {
        Other, Type, Message, Usage, Input, Output, CacheCreationTokens, CacheRead, CacheCreation, Write5m, Write1h, ServerToolUse,
        WebSearch, WebFetch, Delta, Text, Thinking, PartialJson, Content, Completion,
    }

    private Name _p0, _p1, _p2, _p3;
    private Name _pending;
    public UsageCounts Counts;
    public TopType Type;
    public OutputText Text;

    public enum TopType : byte { Unknown, MessageStart, MessageDelta, Error, Message, Completion, Other }

    public void Reset()
    {
        this = default;
    }

    /// <summary>Handles one token; depth is the reader's depth for that token.</summary>
    public void OnToken(ref Utf8JsonReader reader)
    {
        var depth = reader.CurrentDepth;
        switch (reader.TokenType)
        {
            case JsonTokenType.PropertyName:
                _pending = Classify(ref reader);
                switch (depth)
                {
                    case 1: _p0 = _pending; _p1 = _p2 = _p3 = Name.Other; break;
                    case 2: _p1 = _pending; _p2 = _p3 = Name.Other; break;
                    case 3: _p2 = _pending; _p3 = Name.Other; break;
                    case 4: _p3 = _pending; break;
                }
                break;
            case JsonTokenType.String when depth == 1 && _p0 == Name.Type:
                Type = reader.ValueTextEquals("message_start"u8) ? TopType.MessageStart
                    : reader.ValueTextEquals("message_delta"u8) ? TopType.MessageDelta
                    : reader.ValueTextEquals("error"u8) ? TopType.Error
                    : reader.ValueTextEquals("message"u8) ? TopType.Message
                    : reader.ValueTextEquals("completion"u8) ? TopType.Completion
                    : TopType.Other;
                break;
            case JsonTokenType.String when IsOutputText(depth):
                MeasureText(ref reader);
                break;
            case JsonTokenType.Number when reader.TryGetInt64(out var value):
                // usage.* at depth 2 (message_delta, JSON message) or message.usage.* at depth 3 (message_start).
                if (depth == 2 && _p0 == Name.Usage)
                {
                    Assign(_p1, Name.Other, value);
                }
                else if (depth == 3 && _p0 == Name.Usage)
                {
                    Assign(_p1, _p2, value);
                }
                else if (depth == 3 && _p0 == Name.Message && _p1 == Name.Usage)
                {
                    Assign(_p2, Name.Other, value);
                }
                else if (depth == 4 && _p0 == Name.Message && _p1 == Name.Usage)
                {
                    Assign(_p2, _p3, value);
                }
                break;
        }
    }

    private readonly bool IsOutputText(int depth) => depth switch
    {
        1 => _p0 == Name.Completion,
        2 => _p0 == Name.Delta && _p1 is Name.Text or Name.Thinking or Name.PartialJson,
        3 => _p0 == Name.Content && _p2 is Name.Text or Name.Thinking,
        _ => false,
    };

    private void MeasureText(ref Utf8JsonReader reader)
    {
        if (!reader.ValueIsEscaped)
        {
            Text.Add(reader.ValueSpan);
            return;
        }
        // Decoded, as the text it is: an escape such as \n or \u00e9 is one character, not six bytes.
        var length = reader.ValueSpan.Length;
        byte[]? rented = null;
        Span<byte> decoded = length <= 1024 ? stackalloc byte[1024] : (rented = ArrayPool<byte>.Shared.Rent(length));
        Text.Add(decoded[..reader.CopyString(decoded)]);
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private void Assign(Name field, Name sub, long value)
    {
        switch (field)
        {
            case Name.Input: Counts.Input = value; break;
            case Name.Output: Counts.Output = value; break;
            case Name.CacheCreationTokens: Counts.CacheCreation = value; break;
            case Name.CacheRead: Counts.CacheRead = value; break;
            case Name.CacheCreation when sub == Name.Write5m: Counts.CacheWrite5m = value; break;
            case Name.CacheCreation when sub == Name.Write1h: Counts.CacheWrite1h = value; break;
            case Name.ServerToolUse when sub == Name.WebSearch: Counts.WebSearches = value; break;
            case Name.ServerToolUse when sub == Name.WebFetch: Counts.WebFetches = value; break;
        }
    }

    private static Name Classify(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("type"u8) ? Name.Type
        : reader.ValueTextEquals("message"u8) ? Name.Message
        : reader.ValueTextEquals("usage"u8) ? Name.Usage
        : reader.ValueTextEquals("input_tokens"u8) ? Name.Input
        : reader.ValueTextEquals("output_tokens"u8) ? Name.Output
        : reader.ValueTextEquals("cache_creation_input_tokens"u8) ? Name.CacheCreationTokens
        : reader.ValueTextEquals("cache_read_input_tokens"u8) ? Name.CacheRead
        : reader.ValueTextEquals("cache_creation"u8) ? Name.CacheCreation
        : reader.ValueTextEquals("ephemeral_5m_input_tokens"u8) ? Name.Write5m
        : reader.ValueTextEquals("ephemeral_1h_input_tokens"u8) ? Name.Write1h
        : reader.ValueTextEquals("server_tool_use"u8) ? Name.ServerToolUse
        : reader.ValueTextEquals("web_search_requests"u8) ? Name.WebSearch
        : reader.ValueTextEquals("web_fetch_requests"u8) ? Name.WebFetch
        : reader.ValueTextEquals("delta"u8) ? Name.Delta
        : reader.ValueTextEquals("text"u8) ? Name.Text
        : reader.ValueTextEquals("thinking"u8) ? Name.Thinking
        : reader.ValueTextEquals("partial_json"u8) ? Name.PartialJson
        : reader.ValueTextEquals("content"u8) ? Name.Content
        : reader.ValueTextEquals("completion"u8) ? Name.Completion
        : Name.Other;
}
