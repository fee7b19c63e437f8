using ClaudeProxy.Contracts;

using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// The one place the gateway raises events. <see cref="Raise"/> never waits and never touches Postgres: the event goes
/// onto a bounded queue that <see cref="EventWriter"/> stores (keeping its original time while Postgres is down). When
/// the queue is full the new event is dropped, counted and logged once until the queue has room again. Without Postgres
/// nothing is stored or sent, and raising does nothing.
/// </summary>
public sealed partial class GatewayEvents
{
    public const int Capacity = 10_000;
    private readonly Channel<GatewayEvent> _queue = Channel.CreateBounded<GatewayEvent>(new BoundedChannelOptions(Capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });
    private readonly TimeProvider _time;
    private readonly ILogger<GatewayEvents> _logger;
    private readonly Func<string> _instance;
    private readonly bool _enabled;
    private readonly Dictionary<string, (int Episode, bool Down)> _episodes = new(StringComparer.Ordinal);
    private long _dropped;
    private int _dropWarned;

    public GatewayEvents(Configuration.BackingServices backing, TimeProvider time, ILogger<GatewayEvents> logger, Management.GatewayInstances instances)
    {
        _enabled = backing.Postgres;
        _time = time;
        _logger = logger;
        _instance = () => instances.Id;
    }

    /// <summary>This instance's id, as in the heartbeats and in the events it raises.</summary>
    public string Instance => _instance();

    /// <summary>Events dropped since start because the queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    internal ChannelReader<GatewayEvent> Reader => _queue.Reader;

    /// <summary>
    /// Raises an event with <paramref name="data"/> (a JSON object). With <paramref name="dedupKey"/>, the same key raised
    /// by any instance is stored and sent once. Returns the event, or null when it was not queued.
    /// </summary>
    public GatewayEvent? Raise(string type, JsonObject data, string? dedupKey = null, DateTimeOffset? time = null)
    {
        if (!_enabled)
        {
            return null;
        }
        var raised = new GatewayEvent(GatewayEvent.NewId(), type, time ?? _time.GetUtcNow(), Instance, dedupKey, data.ToJsonString());
        if (_queue.Writer.TryWrite(raised))
        {
            if (Volatile.Read(ref _dropWarned) == 1 && _queue.Reader.Count < Capacity / 2)
            {
                Volatile.Write(ref _dropWarned, 0);
            }
            return raised;
        }
        Interlocked.Increment(ref _dropped);
        if (Interlocked.Exchange(ref _dropWarned, 1) == 0)
        {
            LogDropped(_logger, Capacity, type);
        }
        return null;
    }

    /// <summary>The events raised by an operator's write once it is stored; the actor is the admin app's <c>x-operator</c>.</summary>
    internal void RaiseForAudit(string action, string target, string actor)
    {
        if (AuditEvents.For(action) is not { } type)
        {
            return;
        }
        var data = new JsonObject { ["actor"] = actor, ["action"] = action };
        switch (type)
        {
            case EventTypes.UserDeactivated or EventTypes.UserReactivated:
                data["user_id"] = target;
                break;
            case EventTypes.PolicyChanged:
                data["target"] = target;
                break;
            default:
                data["device_id"] = target;
                break;
        }
        Raise(type, data);
    }

    /// <summary>
    /// Raises <c>{service}.lost</c> or <c>{service}.back</c> for this instance's episodes of losing a backing service
    /// (<c>redis</c>, <c>postgres</c>): each episode once, its number and this instance in the dedup key. A "back"
    /// without a "lost" before it (the first success after start) raises nothing.
    /// </summary>
    public void Outage(string service, bool lost, string? reason = null)
    {
        lock (_episodes)
        {
            var (episode, down) = _episodes.GetValueOrDefault(service);
            if (down == lost || (!lost && episode == 0))
            {
                return;
            }
            episode += lost ? 1 : 0;
            _episodes[service] = (episode, lost);
            var data = new JsonObject { ["instance"] = Instance };
            if (reason is not null)
            {
                data["reason"] = reason;
            }
            var type = $"{service}.{(lost ? "lost" : "back")}";
            Raise(type, data, $"{type}:{Instance}:{episode}");
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The event queue is full ({Capacity} events wait for Postgres): new events such as {Type} are dropped until it has room")]
    private static partial void LogDropped(ILogger logger, int capacity, string type);
}
