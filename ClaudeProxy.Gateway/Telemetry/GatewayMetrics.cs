using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace ClaudeProxy.Gateway.Telemetry;

/// <summary>The gateway's own instruments, on the <c>ClaudeProxy.Gateway</c> meter.</summary>
public sealed class GatewayMetrics
{
    private readonly Counter<long> _admitted;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _breakerTransitions;
    private readonly Counter<long> _redisFallbacks;
    private readonly Histogram<long> _tokenUsage;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Counter<double> _cost;
    private readonly Counter<long> _unpriced;
    private readonly Counter<long> _usageSpooled;

    public GatewayMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(TelemetryNames.GatewayMeter);
        _admitted = meter.CreateCounter<long>("claudeproxy.requests.admitted", "{request}", "Requests admitted and forwarded");
        _rejected = meter.CreateCounter<long>("claudeproxy.requests.rejected", "{request}", "Requests the gateway refused, by reason");
        _breakerTransitions = meter.CreateCounter<long>("claudeproxy.circuit_breaker.transitions", "{transition}", "Circuit breaker state changes");
        meter.CreateObservableGauge("claudeproxy.circuit_breaker.state", () => BreakerState, "{state}", "0 closed, 1 open, 2 half-open, 3 isolated");
        _redisFallbacks = meter.CreateCounter<long>("claudeproxy.redis.fallbacks", "{request}", "Requests limited in process because Redis was unavailable");
        _tokenUsage = meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}", "Tokens used per request, by token type");
        _duration = meter.CreateHistogram<double>("gen_ai.client.operation.duration", "s", "Duration of the upstream operation");
        _timeToFirstToken = meter.CreateHistogram<double>("gen_ai.server.time_to_first_token", "s", "Time to the first byte of the answer");
        _cost = meter.CreateCounter<double>("claudeproxy.usage.cost", "USD", "Cost of requests, priced from the pricing file");
        _unpriced = meter.CreateCounter<long>("claudeproxy.usage.unpriced", "{request}", "Requests for a model with no price");
        _usageSpooled = meter.CreateCounter<long>("claudeproxy.usage.spooled", "{event}", "Usage events written to the spool while Postgres was down");
    }

    public int BreakerState { get; set; }

    public void Admitted(string route) => _admitted.Add(1, new KeyValuePair<string, object?>("route", route));

    public void Rejected(string reason) => _rejected.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void BreakerTransition(string state) => _breakerTransitions.Add(1, new KeyValuePair<string, object?>("state", state));

    public void RedisFallback() => _redisFallbacks.Add(1);

    public void Unpriced(string model) => _unpriced.Add(1, new KeyValuePair<string, object?>("gen_ai.request.model", model));

    public void Spooled(int count) => _usageSpooled.Add(count);

    public void Usage(string model, long input, long output, decimal? cost, double durationSeconds, double? ttfbSeconds)
    {
        var tags = new TagList { { "gen_ai.system", "anthropic" }, { "gen_ai.operation.name", "chat" }, { "gen_ai.request.model", model } };
        var inputTags = tags;
        inputTags.Add("gen_ai.token.type", "input");
        _tokenUsage.Record(input, inputTags);
        var outputTags = tags;
        outputTags.Add("gen_ai.token.type", "output");
        _tokenUsage.Record(output, outputTags);
        _duration.Record(durationSeconds, tags);
        if (ttfbSeconds is double ttfb)
        {
            _timeToFirstToken.Record(ttfb, tags);
        }
        if (cost is decimal c)
        {
            _cost.Add((double)c, tags);
        }
    }
}
