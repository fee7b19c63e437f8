namespace ClaudeProxy.Contracts;

/// <summary>The types of the events the gateway raises, in dotted style; a webhook subscribes to some of them or to <see cref="Any"/>.</summary>
public static class EventTypes
{
    public const string Any = "*";
    public const string SpendThresholdCrossed = "spend.threshold_crossed";
    public const string DeviceEnrolled = "device.enrolled";
    public const string DevicePendingApproval = "device.pending_approval";
    public const string DeviceApproved = "device.approved";
    public const string DeviceRevoked = "device.revoked";
    public const string DeviceRestored = "device.restored";
    public const string UserDeactivated = "user.deactivated";
    public const string UserReactivated = "user.reactivated";
    public const string PolicyChanged = "policy.changed";
    public const string CircuitBreakerOpened = "circuit_breaker.opened";
    public const string CircuitBreakerClosed = "circuit_breaker.closed";
    public const string UsageDeadLettered = "usage.dead_lettered";
    public const string RedisLost = "redis.lost";
    public const string RedisBack = "redis.back";
    public const string PostgresLost = "postgres.lost";
    public const string PostgresBack = "postgres.back";
    public const string WebhookTest = "webhook.test";

    public static readonly IReadOnlyList<string> All =
    [
        SpendThresholdCrossed, DeviceEnrolled, DevicePendingApproval, DeviceApproved, DeviceRevoked, DeviceRestored, UserDeactivated,
        UserReactivated, PolicyChanged, CircuitBreakerOpened, CircuitBreakerClosed, UsageDeadLettered, RedisLost, RedisBack, PostgresLost,
        PostgresBack, WebhookTest,
    ];

    public static bool IsKnown(string type) => All.Contains(type, StringComparer.Ordinal);
}

/// <summary>The body of <c>POST /manage/v1/webhooks</c>: url and events are required; secret is generated when left out.</summary>
public sealed record NewWebhook(string? Url, List<string>? Events, string? Secret = null, string? Format = null, string? Description = null, bool? Enabled = null);

/// <summary>The body of <c>PUT /manage/v1/webhooks/{id}</c>: what is left out (null) keeps its value; an empty description clears it.</summary>
public sealed record WebhookUpdate(string? Url = null, List<string>? Events = null, string? Format = null, string? Description = null, bool? Enabled = null);

/// <summary>
/// A webhook endpoint. <see cref="Secret"/> is whole only in the answer that created it; afterwards it is masked
/// (<c>whsec_…abcd</c>).
/// </summary>
public sealed record WebhookView(string WebhookId, string Url, List<string> Events, string Format, string? Description, bool Enabled, string Secret,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

/// <summary>
/// One event's delivery to one endpoint: <c>pending</c> (waiting for its next attempt at <see cref="NextAttemptAt"/>),
/// <c>delivered</c> (a 2xx answer) or <c>failed</c> (retried until its window ended).
/// </summary>
public sealed record WebhookDeliveryView(long DeliveryId, string WebhookId, string EventId, string EventType, DateTimeOffset EventTime, string Status,
    int Attempts, int? LastStatusCode, string? LastError, DateTimeOffset? LastAttemptAt, DateTimeOffset? NextAttemptAt, DateTimeOffset? DeliveredAt,
    DateTimeOffset CreatedAt);

/// <summary>A stored event: <see cref="Data"/> is its data object.</summary>
public sealed record GatewayEventView(string Id, string Type, DateTimeOffset Time, string Instance, System.Text.Json.JsonElement Data);

/// <summary>The answer of a send test or a resend: the event and the delivery that carries it.</summary>
public sealed record WebhookSendResult(string EventId, long DeliveryId);
