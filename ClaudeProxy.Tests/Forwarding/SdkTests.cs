using Anthropic;
using Anthropic.Models.Messages;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Forwarding;

/// <summary>The official C# SDK, pointed at the gateway with a wrapper token, works as it would against Anthropic.</summary>
public sealed class SdkTests(ProxyFixture fx) : IClassFixture<ProxyFixture>
{
    private async Task<AnthropicClient> ClientAsync() => new()
    {
        BaseUrl = fx.Gateway.BaseUrl.ToString().TrimEnd('/'),
        AuthToken = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId("sdk")),
        ApiKey = null,
        MaxRetries = 0,
    };

    private static MessageCreateParams Params(bool tools = false) => new()
    {
        MaxTokens = 256,
        Model = "claude-sonnet-4-5-20250929",
        Messages = [new UserMessageParam("Hello")],
    };

    [Fact]
    public async Task Non_streaming_message()
    {
        var client = await ClientAsync();
        var message = await client.Messages.Create(Params());
        var text = string.Concat(message.Content.Select(b => b.TryPickText(out var t) ? t.Text : ""));
        Assert.Equal("Hello from the Anthropic simulator.", text);
        Assert.Equal(25, message.Usage.InputTokens);
        Assert.Equal(12, message.Usage.OutputTokens);
    }

    [Fact]
    public async Task Streaming_message_arrives_event_by_event()
    {
        var client = await ClientAsync();
        var text = new System.Text.StringBuilder();
        var kinds = new List<string>();
        await foreach (var ev in client.Messages.CreateStreaming(Params()))
        {
            if (ev.TryPickStart(out _))
            {
                kinds.Add("start");
            }
            else if (ev.TryPickContentBlockDelta(out var delta))
            {
                kinds.Add("delta");
                if (delta.Delta.TryPickText(out var t))
                {
                    text.Append(t.Text);
                }
            }
            else if (ev.TryPickDelta(out var messageDelta))
            {
                kinds.Add("message_delta");
                Assert.Equal(12, messageDelta.Usage.OutputTokens);
            }
            else if (ev.TryPickStop(out _))
            {
                kinds.Add("stop");
            }
        }
        Assert.Equal("Hello from the Anthropic simulator.", text.ToString());
        Assert.Equal("start", kinds[0]);
        Assert.Equal("stop", kinds[^1]);
        Assert.Contains("message_delta", kinds);
    }

    [Fact]
    public async Task Count_tokens()
    {
        var client = await ClientAsync();
        var count = await client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = "claude-sonnet-4-5-20250929",
            Messages = [new UserMessageParam("Hello")],
        });
        Assert.True(count.InputTokens > 0);
    }

    [Fact]
    public async Task Models_list_and_retrieve()
    {
        var client = await ClientAsync();
        var page = await client.Models.List();
        Assert.Contains(page.Items, m => m.ID == "claude-sonnet-4-5-20250929");
        var model = await client.Models.Retrieve("claude-opus-4-5-20251101");
        Assert.Equal("claude-opus-4-5-20251101", model.ID);
    }

    [Fact]
    public async Task The_sdk_credential_never_reaches_upstream()
    {
        var client = await ClientAsync();
        await client.Messages.Create(Params());
        var token = client.AuthToken!;
        Assert.All(fx.Simulator.State.Requests, r =>
        {
            Assert.Equal(fx.MasterKey, r.Headers["x-api-key"]);
            Assert.DoesNotContain(r.Headers.Values, v => v.Contains(token, StringComparison.Ordinal));
        });
    }
}
