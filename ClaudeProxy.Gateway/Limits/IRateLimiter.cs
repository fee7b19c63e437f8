namespace ClaudeProxy.Gateway.Limits;

/// <summary>Admits at most <c>Limit</c> requests per key in any window of length <c>Window</c> (a sliding window log).</summary>
public interface IRateLimiter
{
    ValueTask<RateDecision> AcquireAsync(string key, int limit, TimeSpan window, CancellationToken cancellationToken);
}

/// <summary>What the limiter decided, and what to tell the client about its limit.</summary>
public readonly record struct RateDecision(bool Allowed, int Limit, int Remaining, DateTimeOffset ResetAt, TimeSpan RetryAfter);
