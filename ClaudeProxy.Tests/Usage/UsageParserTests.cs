using System.IO.Compression;
using System.Text;
using ClaudeProxy.Gateway.Usage;

namespace ClaudeProxy.Tests.Usage;

/// <summary>The usage tap's parsers, fed the way the network feeds them: in pieces cut anywhere.</summary>
public sealed class UsageParserTests
{
    private const string Stream =
        "event: message_start\n" +
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\"," +
        "\"usage\":{\"input_tokens\":1200,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":4000," +
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n" +
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
        "event: ping\ndata: {\"type\": \"ping\"}\n\n" +
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"usage \\\"input_tokens\\\": 99\"}}\n\n" +
        "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n" +
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":250," +
        "\"input_tokens\":null,\"server_tool_use\":{\"web_search_requests\":2}}}\n\n" +
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    private const string Json =
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"a \\\"usage\\\" of words\"}," +
        "{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"x\",\"input\":{\"usage\":{\"input_tokens\":7}}}],\"stop_reason\":\"end_turn\"," +
        "\"usage\":{\"input_tokens\":1200,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":4000," +
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},\"output_tokens\":250}}";

    private static void AssertCounts(UsageCounts c, long? webSearches)
    {
        Assert.Equal(1200, c.Input);
        Assert.Equal(250, c.Output);
        Assert.Equal(300, c.CacheCreation);
        Assert.Equal(100, c.Write5m);
        Assert.Equal(200, c.Write1h);
        Assert.Equal(4000, c.CacheRead);
        Assert.Equal(webSearches, c.WebSearches);
        Assert.Equal(1200 + 300 + 4000, c.TotalInput);
    }

    private static UsageResult Feed(IUsageParser parser, byte[] bytes, params int[] cuts)
    {
        var start = 0;
        foreach (var cut in cuts.Append(bytes.Length))
        {
            parser.Feed(bytes.AsSpan(start, cut - start));
            start = cut;
        }
        var result = parser.Complete();
        parser.Dispose();
        return result;
    }

    [Fact]
    public void Sse_usage_is_the_same_wherever_the_stream_is_cut()
    {
        var bytes = Encoding.UTF8.GetBytes(Stream);
        for (var cut = 0; cut <= bytes.Length; cut++)
        {
            AssertCounts(Feed(new SseUsageParser(), bytes, cut).Counts, 2);
        }
        AssertCounts(Feed(new SseUsageParser(), bytes, [.. Enumerable.Range(1, bytes.Length - 1)]).Counts, 2);
    }

    [Fact]
    public void Json_usage_is_the_same_wherever_the_answer_is_cut()
    {
        var bytes = Encoding.UTF8.GetBytes(Json);
        for (var cut = 0; cut <= bytes.Length; cut++)
        {
            AssertCounts(Feed(new JsonUsageParser(), bytes, cut).Counts, null);
        }
        AssertCounts(Feed(new JsonUsageParser(), bytes, [.. Enumerable.Range(1, bytes.Length - 1)]).Counts, null);
    }

    [Fact]
    public void Gzipped_json_usage_is_read()
    {
        using var compressed = new MemoryStream();
        using (var gzip = new GZipStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(Encoding.UTF8.GetBytes(Json));
        }
        var bytes = compressed.ToArray();
        AssertCounts(Feed(new CompressedUsageParser(new JsonUsageParser(), "gzip"), bytes, bytes.Length / 3, bytes.Length / 2).Counts, null);
    }

    [Fact]
    public void Non_null_values_in_the_last_message_delta_win()
    {
        var stream = Stream.Replace("\"input_tokens\":null", "\"input_tokens\":1500,\"cache_read_input_tokens\":10");
        var counts = Feed(new SseUsageParser(), Encoding.UTF8.GetBytes(stream)).Counts;
        Assert.Equal(1500, counts.Input);
        Assert.Equal(10, counts.CacheRead);
        Assert.Equal(300, counts.CacheCreation);
        Assert.Equal(250, counts.Output);
    }

    [Fact]
    public void A_mid_stream_error_is_noticed_and_partial_usage_kept()
    {
        var stream = Stream[..Stream.IndexOf("event: content_block_stop", StringComparison.Ordinal)] +
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        var result = Feed(new SseUsageParser(), Encoding.UTF8.GetBytes(stream));
        Assert.True(result.StreamError);
        Assert.Equal(1200, result.Counts.Input);
        // No message_delta came: the output is estimated from the 24 bytes of text streamed, at three bytes a token.
        Assert.True(result.OutputEstimated);
        Assert.Equal(8, result.Counts.Output);
    }

    [Fact]
    public void A_truncated_answer_keeps_what_arrived()
    {
        var bytes = Encoding.UTF8.GetBytes(Stream);
        var cut = Stream.IndexOf("event: ping", StringComparison.Ordinal) + 5;
        var result = Feed(new SseUsageParser(), bytes[..cut]);
        Assert.Equal(1200, result.Counts.Input);
        Assert.Equal(1, result.Counts.Output);
    }
}
