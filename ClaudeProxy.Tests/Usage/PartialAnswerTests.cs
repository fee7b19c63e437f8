using System.Net;
using System.Text;
using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Npgsql;

namespace ClaudeProxy.Tests.Usage;

/// <summary>
/// An answer that ends before its final usage (the client leaves, the upstream breaks off) is still charged, from
/// the text that was streamed, against the spend cap and the token budget, and its row says the output is estimated.
/// </summary>
public sealed class PartialAnswerTests(StackFixture fx) : IClassFixture<StackFixture>
{
    // 600 of the simulator's words: 100 times "Hello from the Anthropic simulator." (35 bytes), 3,500 bytes of text.
    private const int Words = 600;
    // Anthropic's rule of thumb is about 3.5 characters a token for English: the full answer reports 1,000.
    private const int FullOutput = 1000;
    // message_start, content_block_start, ping, the deltas, content_block_stop: the next event is the message_delta.
    private const int MessageDeltaIndex = Words + 4;

    private static (string, string)[] Script(params (string, string)[] more) =>
        [("x-sim-events", Words.ToString()), ("x-sim-input-tokens", "25"), ("x-sim-output-tokens", FullOutput.ToString()), .. more];

    private static async Task<(long Output, decimal Cost, bool Estimated, bool Cancelled)> RowAsync(StackFixture fx, string db, string correlation)
    {
        await using var connection = fx.Connect(db);
        await using var command = new NpgsqlCommand("SELECT output_tokens, cost_usd, output_estimated, cancelled FROM usage_events WHERE correlation_id = @c", connection);
        command.Parameters.AddWithValue("c", correlation);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync(), $"no usage row for {correlation}");
        return (reader.GetInt64(0), reader.GetDecimal(1), reader.GetBoolean(2), reader.GetBoolean(3));
    }

    [Theory]
    [InlineData("client leaves")]
    [InlineData("upstream errs")]
    [InlineData("upstream breaks")]
    public async Task An_answer_cut_after_its_last_content_block_is_charged_at_least_nine_tenths_of_the_full_answer(string how)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);

        var full = "full-" + Guid.NewGuid().ToString("N");
        var fullToken = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId());
        using (var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: fullToken,
            headers: Script(("x-request-id", full))), HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Contains("event: message_delta", await response.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        }

        // The cut answer's device has a token budget that the estimated output uses up, and the full one would have.
        var partial = "partial-" + Guid.NewGuid().ToString("N");
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId(), claims: new Dictionary<string, object> { ["token_limit"] = FullOutput });
        (string, string)[] cut = how switch
        {
            "client leaves" => [("x-sim-hang-after", MessageDeltaIndex.ToString())],
            "upstream errs" => [("x-sim-error-after", MessageDeltaIndex.ToString())],
            // A moment between events, so that the last one has left before the connection is dropped.
            _ => [("x-sim-reset-after", MessageDeltaIndex.ToString()), ("x-sim-delay-ms", "1")],
        };
        using (var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token,
            headers: Script([("x-request-id", partial), ("x-test-marker", partial), .. cut])), HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var blocks = 0;
            try
            {
                while (await Http.ReadEventAsync(reader).WaitAsync(TimeSpan.FromSeconds(30)) is { Length: > 0 } e)
                {
                    Assert.DoesNotContain("message_delta", e);
                    if (e.StartsWith("event: content_block_stop", StringComparison.Ordinal) && ++blocks == 1 && how == "client leaves")
                    {
                        break;
                    }
                }
            }
            catch (IOException) when (how == "upstream breaks")
            {
                // The gateway can only end the client's stream abruptly too, and what the client had not read yet is lost.
            }
            Assert.True(blocks == 1 || how == "upstream breaks");
        }
        if (how == "client leaves")
        {
            Assert.True(await fx.Simulator.State.Find("x-test-marker", partial)!.Aborted.Task.WaitAsync(TimeSpan.FromSeconds(20)));
        }

        await StackFixture.StoredAsync(gateway, 2);
        var whole = await RowAsync(fx, db, full);
        var cutShort = await RowAsync(fx, db, partial);
        Assert.Equal(FullOutput, whole.Output);
        Assert.False(whole.Estimated);
        Assert.True(cutShort.Estimated);
        Assert.True(cutShort.Output >= 0.9 * whole.Output, $"charged {cutShort.Output} output tokens of {whole.Output}");
        Assert.True(cutShort.Cost >= 0.9m * whole.Cost, $"charged {cutShort.Cost} USD of {whole.Cost}");
        // When the upstream breaks, the gateway has to drop the client's stream too, which may read as either.
        Assert.True(cutShort.Cancelled || how != "client leaves");

        using var next = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
        var (_, message) = await Http.AssertErrorAsync(next, 429, "rate_limit_error");
        Assert.Contains("token budget", message);
    }

    [Fact]
    public async Task A_legacy_completion_which_reports_no_usage_is_charged_an_estimate()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db);
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        var correlation = "complete-" + Guid.NewGuid().ToString("N");
        using (var response = await gateway.Client.SendAsync(Http.Post("/v1/complete",
            """{"model":"claude-2.1","prompt":"\n\nHuman: Hi\n\nAssistant:","max_tokens_to_sample":10,"stream":true}""", bearer: token,
            headers: ("x-request-id", correlation))))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsStringAsync();
        }
        await StackFixture.StoredAsync(gateway, 1);
        var row = await RowAsync(fx, db, correlation);
        // "Hello from the Anthropic simulator." is 35 bytes: 12 tokens at three bytes a token.
        Assert.Equal(12, row.Output);
        Assert.True(row.Estimated);
        Assert.True(row.Cost > 0);
    }
}

/// <summary>The estimate itself, on streams cut where the network cuts them.</summary>
public sealed class OutputEstimateTests
{
    private static string Event(string json) => "event: x\ndata: " + json + "\n\n";

    private static readonly string Start = Event("""{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":10,"output_tokens":3}}}""");

    private static UsageResult Feed(string stream, int piece = 7)
    {
        using var parser = new SseUsageParser();
        var bytes = Encoding.UTF8.GetBytes(stream);
        for (var i = 0; i < bytes.Length; i += piece)
        {
            parser.Feed(bytes.AsSpan(i, Math.Min(piece, bytes.Length - i)));
        }
        return parser.Complete();
    }

    [Fact]
    public void Text_thinking_and_tool_input_count_decoded_and_the_rest_does_not()
    {
        var stream = Start
            + Event("""{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"abcdef"}}""")
            + Event("""{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"not counted at all, however long it is"}}""")
            + Event("""{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"a\nb\u0063"}}""")
            + Event("""{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"k\":"}}""")
            + Event("""{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"日本語"}}""");
        var result = Feed(stream);
        Assert.True(result.OutputEstimated);
        // ASCII: 6 + 4 (a, newline, b, c) + 5 ({"k":) = 15 bytes, 5 tokens; and one token for each of the 3 other characters.
        Assert.Equal(5 + 3, result.Counts.Output);
        Assert.Equal(10, result.Counts.Input);
    }

    [Fact]
    public void The_estimate_never_goes_below_what_the_answer_reported()
    {
        var result = Feed(Start + Event("""{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"""));
        Assert.True(result.OutputEstimated);
        Assert.Equal(3, result.Counts.Output);
    }

    [Fact]
    public void A_complete_answer_is_not_estimated()
    {
        var result = Feed(Start
            + Event("""{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a much longer text than forty tokens would be, really"}}""")
            + Event("""{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"""));
        Assert.False(result.OutputEstimated);
        Assert.Equal(2, result.Counts.Output);
    }

    [Fact]
    public void A_json_message_cut_before_its_usage_is_estimated_from_its_text()
    {
        using var parser = new JsonUsageParser();
        parser.Feed("""{"id":"m","type":"message","content":[{"type":"text","text":"123456789"},{"type":"thinking","thinking":"abc"}],"usage":{"inp"""u8);
        var result = parser.Complete();
        Assert.True(result.OutputEstimated);
        Assert.Equal(4, result.Counts.Output);
    }
}
