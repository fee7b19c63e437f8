using System.Collections.Concurrent;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ClaudeProxy.Gateway.Telemetry;

/// <summary>
/// Where the gateway's background work (heartbeat, usage writer, spool replay, pub/sub subscriptions) reports how it
/// is doing. A service that fails keeps running: it reports the failure here, logs it once per episode (the first
/// failure, then the recovery), backs off and tries again. <c>/readyz</c> shows each service's state, and
/// <c>claudeproxy.background.failing</c> counts the failing ones.
/// </summary>
public sealed class BackgroundHealth(GatewayMetrics metrics, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, BackgroundState> _states = new(StringComparer.Ordinal);
    private readonly List<(string Service, bool Failing, TaskCompletionSource Done)> _waiters = [];

    /// <summary>Marks <paramref name="service"/> as working. Returns true when it had been failing (log the recovery).</summary>
    public bool Succeeded(string service)
    {
        var before = _states.GetValueOrDefault(service);
        if (before is { Failing: false })
        {
            return false;
        }
        _states[service] = new BackgroundState(service, false, time.GetUtcNow(), null, 0);
        metrics.BackgroundState(service, failing: false);
        Notify(service, false);
        return before is not null;
    }

    /// <summary>Records a failure of <paramref name="service"/>. Returns true for the first failure of an episode (log it).</summary>
    public bool Failed(string service, Exception error) => Failed(service, Describe(error));

    /// <inheritdoc cref="Failed(string, Exception)"/>
    public bool Failed(string service, string reason)
    {
        metrics.BackgroundFailure(service);
        var before = _states.GetValueOrDefault(service);
        var first = before is not { Failing: true };
        _states[service] = first
            ? new BackgroundState(service, true, time.GetUtcNow(), reason, 1)
            : before! with { Reason = reason, Failures = before.Failures + 1 };
        if (first)
        {
            metrics.BackgroundState(service, failing: true);
            Notify(service, true);
        }
        return first;
    }

    /// <summary>Raised when a service starts failing, or works (again): the service's name and whether it fails now.</summary>
    public event Action<string, bool>? Changed;

    public IReadOnlyList<BackgroundState> Snapshot() => [.. _states.Values.OrderBy(s => s.Service, StringComparer.Ordinal)];

    /// <summary>Completes when <paramref name="service"/> is (or next becomes) failing or working, as asked.</summary>
    public Task WaitForAsync(string service, bool failing)
    {
        lock (_waiters)
        {
            if (_states.TryGetValue(service, out var state) && state.Failing == failing)
            {
                return Task.CompletedTask;
            }
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((service, failing, done));
            return done.Task;
        }
    }

    private void Notify(string service, bool failing)
    {
        Changed?.Invoke(service, failing);
        lock (_waiters)
        {
            foreach (var w in _waiters.Where(w => w.Service == service && w.Failing == failing))
            {
                w.Done.TrySetResult();
            }
            _waiters.RemoveAll(w => w.Service == service && w.Failing == failing);
        }
    }

    /// <summary>The exception's type and message, one line, never more than 200 characters.</summary>
    public static string Describe(Exception error)
    {
        var text = $"{error.GetType().Name}: {error.Message}".ReplaceLineEndings(" ").Replace('\0', ' ');
        return text.Length <= 200 ? text : text[..200];
    }

    /// <summary>The <c>/readyz</c> entry: degraded while any background service fails, with each one's state.</summary>
    public HealthCheckResult Check()
    {
        var states = Snapshot();
        if (states.Count == 0)
        {
            return HealthCheckResult.Healthy("no background services reported yet");
        }
        var now = time.GetUtcNow();
        var text = string.Join("; ", states.Select(s => s.Failing
            ? $"{s.Service}: failing for {(int)(now - s.Since).TotalSeconds} s, {s.Failures} attempts ({s.Reason})"
            : $"{s.Service}: ok"));
        return states.Any(s => s.Failing) ? HealthCheckResult.Degraded(text) : HealthCheckResult.Healthy(text);
    }
}

/// <summary>One background service's state: failing or not, since when, why, and how many attempts failed in this episode.</summary>
public sealed record BackgroundState(string Service, bool Failing, DateTimeOffset Since, string? Reason, long Failures);

/// <summary>Retry delays that double from <paramref name="initial"/> to <paramref name="max"/>, with a little jitter so instances spread out.</summary>
public sealed class Backoff(TimeSpan initial, TimeSpan max)
{
    private int _attempt;

    public TimeSpan Next()
    {
        var delay = initial.TotalMilliseconds * Math.Pow(2, Math.Min(_attempt++, 16));
        var capped = Math.Min(delay, max.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(capped * (0.8 + (Random.Shared.NextDouble() * 0.4)));
    }

    public void Reset() => _attempt = 0;
}

/// <summary>A health check that asks a component for its own state.</summary>
public sealed class DelegateHealthCheck(Func<HealthCheckResult> check) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) => Task.FromResult(check());
}
