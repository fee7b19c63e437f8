using System.Text;
using BenchmarkDotNet.Attributes;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Gateway.Usage;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Benchmarks;

/// <summary>Reading and scanning a request body once: a small message and a Claude Code-sized 100 KB one.</summary>
[MemoryDiagnoser]
public class BodyScanBenchmarks
{
    private byte[] _small = [];
    private byte[] _large = [];

    [GlobalSetup]
    public void Setup()
    {
        _small = """{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"""u8.ToArray();
        _large = Encoding.UTF8.GetBytes(
            "{\"model\":\"claude-sonnet-4-5-20250929\",\"max_tokens\":8192,\"stream\":true,\"system\":[{\"type\":\"text\",\"text\":\""
            + new string('x', 100 * 1024) + "\"}],\"tools\":[],\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}");
    }

    [Benchmark(Baseline = true)]
    public Task<int> Small() => ReadAsync(_small);

    [Benchmark]
    public Task<int> Large100KB() => ReadAsync(_large);

    private static async Task<int> ReadAsync(byte[] payload)
    {
        var context = new DefaultHttpContext();
        context.Request.Body = new MemoryStream(payload, writable: false);
        context.Request.ContentLength = payload.Length;
        var (body, _, _) = await RequestBody.ReadAsync(context, 2 * 1024 * 1024);
        using (body)
        {
            return body!.Length;
        }
    }
}

/// <summary>Wrapper token validation: the first time (signature and claims) and every later time (the cache).</summary>
[MemoryDiagnoser]
public class TokenBenchmarks
{
    private GatewayOptions _options = null!;
    private TokenService _warm = null!;
    private string _token = "";

    [GlobalSetup]
    public async Task Setup()
    {
        _options = GatewayOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ANTHROPIC_API_KEY"] = "sk-benchmark",
            ["JWT_SECRET"] = "benchmark-secret-benchmark-secret-0123456789",
        }).Build());
        _warm = new TokenService(_options, TimeProvider.System);
        _token = _warm.Issue("bench-device", "bench-user", "bench-org", new DevicePolicy(["claude-*"], 100, null, 25m, 1)).Token;
        await _warm.ValidateAsync(_token);
    }

    [Benchmark(Baseline = true)]
    public async Task<bool> Cached() => (await _warm.ValidateAsync(_token)).Status == TokenStatus.Valid;

    [Benchmark]
    public async Task<bool> FirstSight() => (await new TokenService(_options, TimeProvider.System).ValidateAsync(_token)).Status == TokenStatus.Valid;
}

/// <summary>The usage tap's parsers over a 50-delta streamed answer (in 1 KB writes) and a JSON answer.</summary>
[MemoryDiagnoser]
public class UsageTapBenchmarks
{
    private byte[] _sse = [];
    private byte[] _json = [];

    [GlobalSetup]
    public void Setup()
    {
        var sse = new StringBuilder();
        sse.Append("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1200,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":80000,\"output_tokens\":1}}}\n\n");
        sse.Append("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        for (var i = 0; i < 50; i++)
        {
            sse.Append("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"word ").Append(i).Append(" \"}}\n\n");
        }
        sse.Append("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
        sse.Append("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":150}}\n\n");
        sse.Append("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        _sse = Encoding.UTF8.GetBytes(sse.ToString());
        _json = """{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello there"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}}"""u8.ToArray();
    }

    [Benchmark(Baseline = true)]
    public long Sse50Deltas()
    {
        using var parser = new SseUsageParser();
        for (var offset = 0; offset < _sse.Length; offset += 1024)
        {
            parser.Feed(_sse.AsSpan(offset, Math.Min(1024, _sse.Length - offset)));
        }
        return parser.Complete().Counts.Output ?? 0;
    }

    [Benchmark]
    public long Json()
    {
        using var parser = new JsonUsageParser();
        parser.Feed(_json);
        return parser.Complete().Counts.Output ?? 0;
    }
}
