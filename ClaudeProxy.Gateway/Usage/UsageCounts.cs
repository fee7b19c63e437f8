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

    /// <summary>Output as estimated from the text seen, never less than the output the answer already reported.</summary>
    public void EstimateOutput(in OutputText seen) => Output = Math.Max(Output ?? 0, seen.Tokens);
}

/// <summary>
/// The output text an answer carried (text, thinking and tool input JSON, decoded), kept to estimate its output tokens
/// when the answer ends before its final usage. The rule: ASCII at three bytes a token, rounded up, and one token for
/// every other character. Anthropic gives about 3.5 characters a token for English, so this errs high; thinking that
/// arrived summarised is billed in full upstream and is the one case it can fall short of.
/// </summary>
public struct OutputText
{
    public long AsciiBytes { get; private set; }
    public long OtherChars { get; private set; }

    public readonly bool Any => AsciiBytes > 0 || OtherChars > 0;

    public readonly long Tokens => (AsciiBytes + 2) / 3 + OtherChars;

    public void Add(ReadOnlySpan<byte> utf8)
    {
        var firstOther = utf8.IndexOfAnyExceptInRange((byte)0, (byte)0x7F);
        if (firstOther < 0)
        {
            AsciiBytes += utf8.Length;
            return;
        }
        AsciiBytes += firstOther;
        foreach (var b in utf8[firstOther..])
        {
            if (b < 0x80)
            {
                AsciiBytes++;
            }
            else if ((b & 0xC0) != 0x80)
            {
                OtherChars++;
            }
        }
    }

    public void Add(in OutputText other)
    {
        AsciiBytes += other.AsciiBytes;
        OtherChars += other.OtherChars;
    }
}
