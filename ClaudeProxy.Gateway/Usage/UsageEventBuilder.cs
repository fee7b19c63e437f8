using System.Collections.Concurrent;
using System.Diagnostics;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Telemetry;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// Builds the usage event of a forwarded request from what the usage tap read: the token counts, their cost at the
/// price book's prices, the timings and the request's identifiers. An answer that ended before its final usage is
/// charged its estimated output; a model without a price is charged at the highest prices, and warned about once.
/// </summary>
public sealed partial class UsageEventBuilder(PriceBook prices, GatewayMetrics metrics, TimeProvider time, ILogger<UsageEventBuilder> logger)
{
    private const int MaxUnpricedWarnings = 1000;
    private readonly ConcurrentDictionary<string, bool> _unpriced = new(StringComparer.Ordinal);
    private int _unpricedWarnings;

    /// <summary>
    /// The event of one request that may have reached Anthropic. <paramref name="started"/> and
    /// <paramref name="firstByte"/> are <see cref="Stopwatch"/> timestamps (the latter 0 when no byte came).
    /// </summary>
    public UsageEvent Build(HttpContext context, ApiRoute route, DeviceIdentity identity, RequestBody? body, string model, in UsageResult usage,
        long started, long firstByte, bool cancelled)
    {
        var counts = usage.Counts;
        if (usage.OutputEstimated && counts.Input is null && body is not null)
        {
            // The legacy completions API reports no usage at all: its input is the same estimate the reservation made.
            counts.Input = Reservations.InputEstimate(body);
        }
        var cost = 0m;
        var costEstimated = false;
        if (counts.Any)
        {
            cost = prices.Charge(model, counts, out costEstimated);
            if (costEstimated && model.Length > 0)
            {
                WarnUnpriced(model);
            }
        }
        return new UsageEvent
        {
            Id = Guid.CreateVersion7(),
            Time = time.GetUtcNow(),
            DeviceId = identity.DeviceId,
            UserId = identity.UserId,
            UserEmail = identity.Email,
            GroupIds = identity.Policy?.GroupIds,
            OrgId = identity.OrgId,
            SessionId = Header(context.Request.Headers, "x-claude-code-session-id"),
            AgentId = Header(context.Request.Headers, "x-claude-code-agent-id"),
            ParentAgentId = Header(context.Request.Headers, "x-claude-code-parent-agent-id"),
            Model = model,
            Endpoint = route.Name(),
            Status = context.Response.StatusCode,
            Streamed = body?.Stream == true || (context.Response.ContentType?.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) ?? false),
            InputTokens = counts.Input ?? 0,
            OutputTokens = counts.Output ?? 0,
            CacheWrite5mTokens = counts.Write5m,
            CacheWrite1hTokens = counts.Write1h,
            CacheReadTokens = counts.CacheRead ?? 0,
            WebSearchRequests = counts.WebSearches ?? 0,
            WebFetchRequests = counts.WebFetches ?? 0,
            CostUsd = cost,
            CostEstimated = costEstimated,
            OutputEstimated = usage.OutputEstimated,
            LatencyMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds,
            TimeToFirstByteMs = firstByte > 0 ? Stopwatch.GetElapsedTime(started, firstByte).TotalMilliseconds : null,
            UpstreamRequestId = Header(context.Response.Headers, "request-id"),
            CorrelationId = CorrelationId.Get(context),
            Cancelled = cancelled,
            StreamError = usage.StreamError,
        };
    }

    /// <summary>Every input token of an event, cache writes and reads included: what the token budget counts.</summary>
    public static long TotalInput(UsageEvent usage) => usage.InputTokens + usage.CacheWrite5mTokens + usage.CacheWrite1hTokens + usage.CacheReadTokens;

    /// <summary>Warns once per unpriced model, for the first <see cref="MaxUnpricedWarnings"/> models only.</summary>
    private void WarnUnpriced(string model)
    {
        metrics.Unpriced(model);
        if (Volatile.Read(ref _unpricedWarnings) < MaxUnpricedWarnings && !_unpriced.ContainsKey(model)
            && Interlocked.Increment(ref _unpricedWarnings) <= MaxUnpricedWarnings && _unpriced.TryAdd(model, true))
        {
            LogUnpriced(logger, model);
        }
    }

    private static string? Header(IHeaderDictionary headers, string name) =>
        headers.TryGetValue(name, out var value) && value.ToString() is { Length: > 0 and <= 256 } s ? s : null;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model} has no price in the pricing file: it is charged at the highest prices, and its cost is marked estimated")]
    private static partial void LogUnpriced(ILogger logger, string model);
}
