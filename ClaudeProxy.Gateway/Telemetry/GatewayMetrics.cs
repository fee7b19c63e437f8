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
    private readonly Counter<long> _usageDeadLetters;
    private readonly Counter<long> _spoolQuarantined;
    private readonly Counter<long> _usageDropped;
    private readonly Counter<long> _backgroundFailures;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _backgroundFailing = new(StringComparer.Ordinal);

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
        _usageDeadLetters = meter.CreateCounter<long>("claudeproxy.usage.dead_letters", "{event}", "Usage events Postgres refused, kept as dead letters, by source");
        _spoolQuarantined = meter.CreateCounter<long>("claudeproxy.usage.spool.quarantined", "{file}", "Spool files that could not be replayed and were set aside");
        _usageDropped = meter.CreateCounter<long>("claudeproxy.usage.dropped", "{event}", "Usage events that neither Postgres, the spool nor memory could keep");
        _backgroundFailures = meter.CreateCounter<long>("claudeproxy.background.failures", "{failure}", "Failed attempts of background services, by service");
        meter.CreateObservableGauge("claudeproxy.background.failing", () => _backgroundFailing.Select(s =>
            new Measurement<int>(s.Value, new KeyValuePair<string, object?>("service", s.Key))), "{service}", "1 while a background service is failing, else 0");
    }

    public int BreakerState { get; set; }

    /// <summary>The refusals counted since they were last stored in <c>refusal_rollups</c>.</summary>
    public RefusalCounts Refusals { get; } = new();

    public void Admitted(string route) => _admitted.Add(1, new KeyValuePair<string, object?>("route", route));

    public void Rejected(string reason)
    {
        _rejected.Add(1, new KeyValuePair<string, object?>("reason", reason));
        Refusals.Add(reason);
    }

    public void BreakerTransition(string state) => _breakerTransitions.Add(1, new KeyValuePair<string, object?>("state", state));

    public void RedisFallback() => _redisFallbacks.Add(1);

    public void Unpriced(string model) => _unpriced.Add(1, new KeyValuePair<string, object?>("gen_ai.request.model", model));

    public void Spooled(int count) => _usageSpooled.Add(count);

    public void DeadLettered(string source) => _usageDeadLetters.Add(1, new KeyValuePair<string, object?>("source", source));

    public void SpoolQuarantined() => _spoolQuarantined.Add(1);

    public void UsageDropped(int count) => _usageDropped.Add(count);

    public void BackgroundFailure(string service) => _backgroundFailures.Add(1, new KeyValuePair<string, object?>("service", service));

    public void BackgroundState(string service, bool failing) => _backgroundFailing[service] = failing ? 1 : 0;

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
