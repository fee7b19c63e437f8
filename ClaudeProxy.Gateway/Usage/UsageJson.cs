using System.Text.Json;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// Reads Anthropic usage out of JSON tokens without allocating: a path of up to four known property names is kept,
/// and numbers are assigned by where they stand. Shared by the SSE and the JSON parsers.
/// </summary>
internal struct UsageJson
{
    private enum Name : byte
    {
        Other, Type, Message, Usage, Input, Output, CacheCreationTokens, CacheRead, CacheCreation, Write5m, Write1h, ServerToolUse,
        WebSearch, WebFetch,
    }

    private Name _p0, _p1, _p2, _p3;
    private Name _pending;
    public UsageCounts Counts;
    public TopType Type;

    public enum TopType : byte { Unknown, MessageStart, MessageDelta, Error, Message, Other }

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
                    : TopType.Other;
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
        : Name.Other;
}
