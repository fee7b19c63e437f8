namespace ClaudeProxy.Gateway.Data;

/// <summary>
/// Something the gateway announced (a spend threshold crossed, a device revoked, Redis lost): its type in dotted
/// style, when it happened, which instance raised it, and its data as JSON. <see cref="DedupKey"/>, when set, is
/// unique: the same happening seen by several instances is stored once.
/// </summary>
public sealed class GatewayEventRecord
{
    /// <summary><c>evt_</c> and 24 lower-case letters or digits; the <c>webhook-id</c> of every delivery of it.</summary>
    public required string Id { get; set; }
    /// <summary>Storage order, for paging newest first.</summary>
    public long Seq { get; set; }
    public required string Type { get; set; }
    public DateTimeOffset Time { get; set; }
    public required string Instance { get; set; }
    public string? DedupKey { get; set; }
    /// <summary>The event's data object as JSON.</summary>
    public required string Data { get; set; }
}

/// <summary>Where events are sent: a URL, the event types it wants (or <c>*</c>), its signing secret and payload format.</summary>
public sealed class WebhookEndpoint
{
    public const string Json = "json";
    public const string Slack = "slack";

    /// <summary><c>wh_</c> and 16 lower-case letters or digits.</summary>
    public required string WebhookId { get; set; }
    public required string Url { get; set; }
    public List<string> Events { get; set; } = [];
    /// <summary><c>whsec_</c> and the base64 of the key (Standard Webhooks).</summary>
    public required string Secret { get; set; }
    public required string Format { get; set; }
    public string? Description { get; set; }
    public bool Enabled { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>
/// One event on its way to one endpoint (unique per pair, so fanning out twice sends once): pending until a 2xx
/// answer (delivered) or until its retry window ends (failed). A dispatcher holds it while sending under a lease.
/// </summary>
public sealed class WebhookDelivery
{
    public const string Pending = "pending";
    public const string Delivered = "delivered";
    public const string Failed = "failed";

    public long Id { get; set; }
    public required string WebhookId { get; set; }
    public required string EventId { get; set; }
    public required string Status { get; set; }
    public int Attempts { get; set; }
    public DateTimeOffset NextAttemptAt { get; set; }
    /// <summary>After this, a failed attempt is the last one.</summary>
    public DateTimeOffset RetryUntil { get; set; }
    public DateTimeOffset? LeasedUntil { get; set; }
    public Guid? LeaseToken { get; set; }
    public int? LastStatusCode { get; set; }
    public string? LastError { get; set; }
    public DateTimeOffset? LastAttemptAt { get; set; }
    public DateTimeOffset? DeliveredAt { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}
