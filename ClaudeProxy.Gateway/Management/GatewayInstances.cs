using System.Text.Json;
using ClaudeProxy.Gateway.Forwarding;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// Each instance announces itself in Redis every two seconds; the management API lists those seen lately, and the
/// limiter divides a device's remaining spend among the live ones while Redis is away (the count taken last).
/// </summary>
public sealed class GatewayInstances(UpstreamCircuitBreaker breaker, TimeProvider time, IConnectionMultiplexer? redis = null) : BackgroundService, Limits.ILiveInstances
{
    private int _liveCount;

    private const string Key = "cp:instances";
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);
    private readonly string _id = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";
    private readonly DateTimeOffset _started = time.GetUtcNow();

    public string Id => _id;

    public int? LiveCount => Volatile.Read(ref _liveCount) is > 0 and var count ? count : null;

    public GatewayInstance Self() => new(_id, Environment.MachineName, Environment.ProcessId, _started, time.GetUtcNow(), BreakerStatus.Of(breaker));

    public async Task<IReadOnlyList<GatewayInstance>> ListAsync()
    {
        if (redis is null)
        {
            return [Self()];
        }
        try
        {
            return await ReadAsync(redis);
        }
        catch (RedisException)
        {
            return [Self()];
        }
    }

    private async Task<IReadOnlyList<GatewayInstance>> ReadAsync(IConnectionMultiplexer connection)
    {
        var now = time.GetUtcNow();
        var entries = await connection.GetDatabase().HashGetAllAsync(Key);
        var list = new List<GatewayInstance>();
        foreach (var entry in entries)
        {
            var instance = JsonSerializer.Deserialize(entry.Value.ToString(), ManagementJsonContext.Default.GatewayInstance);
            if (instance is null || now - instance.LastSeen > TimeSpan.FromMinutes(1))
            {
                await connection.GetDatabase().HashDeleteAsync(Key, entry.Name);
            }
            else if (now - instance.LastSeen <= Interval * 5)
            {
                list.Add(instance);
            }
        }
        return [.. list.OrderBy(i => i.StartedAt)];
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (redis is null)
        {
            return;
        }
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            try
            {
                await redis.GetDatabase().HashSetAsync(Key, _id, JsonSerializer.Serialize(Self(), ManagementJsonContext.Default.GatewayInstance));
                Volatile.Write(ref _liveCount, (await ReadAsync(redis)).Count);
            }
            catch (RedisException)
            {
                // Heartbeats resume when Redis is back.
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).AsTask().ContinueWith(t => !t.IsCanceled && t.Result, TaskScheduler.Default));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (redis is not null)
        {
            try
            {
                await redis.GetDatabase().HashDeleteAsync(Key, _id);
            }
            catch (RedisException)
            {
            }
        }
    }
}

public sealed record GatewayInstance(string Id, string Host, int ProcessId, DateTimeOffset StartedAt, DateTimeOffset LastSeen, BreakerStatus Breaker);
