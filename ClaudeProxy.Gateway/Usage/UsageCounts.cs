namespace ClaudeProxy.Gateway.Usage;

/// <summary>Token counts as the upstream reported them; null where a field was absent.</summary>
public struct UsageCounts
{
    public long? Input { get; set; }
    public long? Output { get; set; }
    public long? CacheCreation { get; set; }
    public long? CacheWrite5m { get; set; }
    public long? CacheWrite1h { get; set; }
    public long? CacheRead { get; set; }
    public long? WebSearches { get; set; }
    public long? WebFetches { get; set; }

    public readonly bool Any => Input is not null || Output is not null || CacheCreation is not null || CacheRead is not null;

    /// <summary>Non-null values of <paramref name="later"/> replace ours (message_delta over message_start).</summary>
    public void Merge(in UsageCounts later)
    {
        Input = later.Input ?? Input;
        Output = later.Output ?? Output;
        CacheCreation = later.CacheCreation ?? CacheCreation;
        CacheWrite5m = later.CacheWrite5m ?? CacheWrite5m;
        CacheWrite1h = later.CacheWrite1h ?? CacheWrite1h;
        CacheRead = later.CacheRead ?? CacheRead;
        WebSearches = later.WebSearches ?? WebSearches;
        WebFetches = later.WebFetches ?? WebFetches;
    }

    /// <summary>5-minute cache writes; without a breakdown every cache write is priced as 5-minute.</summary>
    public readonly long Write5m => CacheWrite5m ?? Math.Max(0, (CacheCreation ?? 0) - (CacheWrite1h ?? 0));

    public readonly long Write1h => CacheWrite1h ?? 0;

    /// <summary>All input tokens: plain input, cache writes and cache reads.</summary>
    public readonly long TotalInput => (Input ?? 0) + Write5m + Write1h + (CacheRead ?? 0);
}
