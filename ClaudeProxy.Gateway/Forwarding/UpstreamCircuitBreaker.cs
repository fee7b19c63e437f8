using System.Net;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Telemetry;
using Polly;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// A Polly circuit breaker around the upstream call, up to the response headers. Connection failures, timeouts,
/// 500, 502, 503, 504 and 529 count as failures; 4xx do not. While open, requests fail fast with 529 and never
/// reach Anthropic; after the break one probe goes through, and a success closes it.
/// </summary>
public sealed partial class UpstreamCircuitBreaker
{
    public const string TimeProviderKey = "breaker";

    private readonly CircuitBreakerStateProvider _state = new();
    private readonly CircuitBreakerManualControl _control = new();
    private readonly TimeProvider _time;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger<UpstreamCircuitBreaker> _logger;
    private readonly object _statsLock = new();
    private readonly Limits.MinuteCounter _failures = new();
    private readonly Limits.MinuteCounter _successes = new();

    public UpstreamCircuitBreaker(BreakerOptions options, GatewayOptions gateway, [FromKeyedServices(TimeProviderKey)] TimeProvider time,
        GatewayMetrics metrics, ILogger<UpstreamCircuitBreaker> logger)
    {
        Options = options;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        Since = time.GetUtcNow();
        Pipeline = new ResiliencePipelineBuilder<HttpResponseMessage> { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<HttpResponseMessage>
            {
                // Read by the status endpoints and the reset, without going through the pipeline.
                StateProvider = _state,
                ManualControl = _control,
                FailureRatio = options.FailureRatio,
                MinimumThroughput = options.MinimumThroughput,
                SamplingDuration = options.SamplingDuration,
                BreakDuration = options.BreakDuration,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome switch
                {
                    { Exception: HttpRequestException or TimeoutRejectedException } => true,
                    { Result: { } response } => IsFailure(response.StatusCode),
                    _ => false,
                }),
                OnOpened = args => Transition("open", args.BreakDuration),
                OnClosed = _ => Transition("closed", null),
                OnHalfOpened = _ => Transition("half-open", null),
            })
            // Time to the response headers; a non-streamed answer may legitimately take minutes.
            .AddTimeout(gateway.UpstreamTimeout)
            .Build();
    }

    public BreakerOptions Options { get; }
    public ResiliencePipeline<HttpResponseMessage> Pipeline { get; }
    public CircuitState State => _state.CircuitState;
    public DateTimeOffset Since { get; private set; }
    public DateTimeOffset? OpenUntil => Volatile.Read(ref _openUntilTicks) is var t and > 0 ? new DateTimeOffset(t, TimeSpan.Zero) : null;

    // Ticks (UTC) of the end of the current break, 0 when not open: read on every request without Polly's lock.
    private long _openUntilTicks;

    /// <summary>Raised after each state change with the new state's name.</summary>
    public event Action<string>? StateChanged;

    public static bool IsFailure(HttpStatusCode status) => (int)status is 500 or 502 or 503 or 504 or 529;

    /// <summary>Open and within its break: a request now would be refused without trying. Polly half-opens lazily, on the next call after the break.</summary>
    public bool IsBreaking => Volatile.Read(ref _openUntilTicks) is var t and > 0 && t > _time.GetUtcNow().UtcTicks;

    /// <summary>How long until an open breaker lets a probe through.</summary>
    public TimeSpan RetryAfter => OpenUntil is { } until && until > _time.GetUtcNow() ? until - _time.GetUtcNow() : TimeSpan.Zero;

    public (long Failures, long Successes) RecentCounts()
    {
        var now = _time.GetUtcNow();
        lock (_statsLock)
        {
            return (_failures.Used(now).Used, _successes.Used(now).Used);
        }
    }

    internal void Record(bool failure)
    {
        var now = _time.GetUtcNow();
        lock (_statsLock)
        {
            (failure ? _failures : _successes).Add(now, 1);
        }
    }

    public Task ResetAsync() => _control.CloseAsync();

    private ValueTask Transition(string state, TimeSpan? breakDuration)
    {
        Since = _time.GetUtcNow();
        Volatile.Write(ref _openUntilTicks, breakDuration is { } d ? (Since + d).UtcTicks : 0);
        _metrics.BreakerState = state switch { "open" => 1, "half-open" => 2, _ => 0 };
        _metrics.BreakerTransition(state);
        LogTransition(_logger, state);
        StateChanged?.Invoke(state);
        return ValueTask.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream circuit breaker is now {State}")]
    private static partial void LogTransition(ILogger logger, string state);
}

/// <summary>Runs each upstream call through the breaker, and records its outcome for the breaker's status.</summary>
public sealed class CircuitBreakerHandler(UpstreamCircuitBreaker breaker) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        try
        {
            var response = await breaker.Pipeline.ExecuteAsync(
                static (state, ct) => new ValueTask<HttpResponseMessage>(state.Handler.SendBase(state.Request, ct)),
                (Handler: this, Request: request), cancellationToken);
            breaker.Record(UpstreamCircuitBreaker.IsFailure(response.StatusCode));
            return response;
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutRejectedException)
        {
            breaker.Record(failure: true);
            throw;
        }
    }

    private Task<HttpResponseMessage> SendBase(HttpRequestMessage request, CancellationToken cancellationToken) => base.SendAsync(request, cancellationToken);
}
