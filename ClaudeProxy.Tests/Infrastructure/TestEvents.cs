using ClaudeProxy.Gateway.Usage;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>Usage events for tests that write them straight to the usage writer or the spool.</summary>
public static class TestEvents
{
    public static UsageEvent Usage(string model = "claude-sonnet-4-5-20250929", string device = "writer-test") => new()
    {
        Id = Guid.NewGuid(),
        Time = DateTimeOffset.UtcNow,
        DeviceId = device,
        UserId = "user-1",
        OrgId = "default",
        Model = model,
        Endpoint = "messages",
        Status = 200,
        Streamed = false,
        InputTokens = 10,
        OutputTokens = 20,
        CostUsd = 0.001m,
        LatencyMs = 12,
        CorrelationId = "writer-" + Guid.NewGuid().ToString("N"),
    };
}
