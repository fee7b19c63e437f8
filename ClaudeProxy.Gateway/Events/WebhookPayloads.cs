using ClaudeProxy.Contracts;

using System.Globalization;
using System.Text;
using System.Text.Json;

namespace ClaudeProxy.Gateway.Events;

/// <summary>The bodies a delivery sends: the event as JSON, or a Slack incoming-webhook message with one readable line.</summary>
public static class WebhookPayloads
{
    // Readable text: apostrophes and the like stay themselves (the bodies are never embedded in HTML).
    private static readonly JsonWriterOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Body(string format, string id, string type, DateTimeOffset time, string data) =>
        format == Data.WebhookEndpoint.Slack ? Slack(type, data) : Json(id, type, time, data);

    /// <summary><c>{"id": …, "type": …, "time": …, "data": {…}}</c>.</summary>
    public static string Json(string id, string type, DateTimeOffset time, string data)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, Relaxed))
        {
            writer.WriteStartObject();
            writer.WriteString("id", id);
            writer.WriteString("type", type);
            writer.WriteString("time", time.ToUniversalTime());
            writer.WritePropertyName("data");
            writer.WriteRawValue(data);
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary><c>{"text": …}</c>, exactly.</summary>
    public static string Slack(string type, string data)
    {
        using var document = JsonDocument.Parse(data);
        var text = Line(type, document.RootElement);
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, Relaxed))
        {
            writer.WriteStartObject();
            writer.WriteString("text", text);
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>The readable line of an event (Slack's few markup characters escaped).</summary>
    public static string Line(string type, JsonElement data)
    {
        string S(string name) => Escape(data.TryGetProperty(name, out var v) ? v.ValueKind == JsonValueKind.String ? v.GetString()! : v.ToString() : "?");
        var by = data.TryGetProperty("actor", out _) ? $" by {S("actor")}" : "";
        return type switch
        {
            EventTypes.SpendThresholdCrossed => Spend(data),
            EventTypes.DeviceEnrolled => $":new: Device {S("device_id")} enrolled{by}.",
            EventTypes.DevicePendingApproval => $":hourglass: Device {S("device_id")} is waiting for an operator's approval.",
            EventTypes.DeviceApproved => $":white_check_mark: Device {S("device_id")} was approved{by}.",
            EventTypes.DeviceRevoked => $":no_entry_sign: Device {S("device_id")} was revoked{by}.",
            EventTypes.DeviceRestored => $":arrows_counterclockwise: Device {S("device_id")} was restored{by}.",
            EventTypes.UserDeactivated => $":no_entry_sign: {S("user_id")} was deactivated{by}.",
            EventTypes.UserReactivated => $":arrows_counterclockwise: {S("user_id")} was reactivated{by}.",
            EventTypes.PolicyChanged => $":pencil2: The policy changed ({S("action")} on {S("target")}){by}.",
            EventTypes.CircuitBreakerOpened => $":rotating_light: The upstream circuit breaker opened on {S("instance")}: requests to Anthropic are refused for a while.",
            EventTypes.CircuitBreakerClosed => $":white_check_mark: The upstream circuit breaker closed on {S("instance")}.",
            EventTypes.UsageDeadLettered => $":warning: A usage event could not be stored and was dead-lettered ({S("reason")}).",
            EventTypes.RedisLost => $":rotating_light: {S("instance")} lost Redis: limits are kept per instance until it is back.",
            EventTypes.RedisBack => $":white_check_mark: {S("instance")} has Redis back.",
            EventTypes.PostgresLost => $":rotating_light: {S("instance")} lost Postgres: usage is spooled to disk until it is back.",
            EventTypes.PostgresBack => $":white_check_mark: {S("instance")} has Postgres back.",
            EventTypes.WebhookTest => ":wave: A test event from ClaudeProxy: this webhook works.",
            _ => Escape(type),
        };
    }

    private static string Spend(JsonElement data)
    {
        var who = data.TryGetProperty("name", out var n) ? n.GetString() ?? "A spend cap" : "A spend cap";
        who = who.Length > 0 ? char.ToUpperInvariant(who[0]) + who[1..] : who;
        var threshold = data.GetProperty("threshold").GetInt32();
        var cap = data.GetProperty("cap_usd").GetDecimal();
        var spent = data.GetProperty("spent_usd").GetDecimal();
        var period = data.TryGetProperty("period", out var p) ? p.GetString() switch { "day" => "today", "week" => "this week", _ => "this month" } : "this month";
        var icon = threshold >= 100 ? ":no_entry:" : ":warning:";
        var verb = threshold >= 100 ? "reached" : "passed";
        return Escape($"{icon} {who} {verb} {threshold} % of {Usd(cap)} {period} ({Usd(spent)} spent).");
    }

    private static string Usd(decimal amount) => "$" + amount.ToString("N2", CultureInfo.InvariantCulture);

    private static string Escape(string text) => text.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
