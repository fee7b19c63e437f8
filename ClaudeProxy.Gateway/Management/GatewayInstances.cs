using System.Text.Json;
using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Telemetry;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// Each instance announces itself in Redis every two seconds; the management API lists those seen lately, and the
/// limiter divides a device's remaining spend among the live ones while Redis is away (the count taken last). While
/// Redis cannot be reached the heartbeat reports it (once per episode in the log, in <c>/readyz</c> and in
/// <c>claudeproxy.background.failing</c>), backs off, and resumes when Redis is back; the process keeps serving.
/// </summary>
public sealed partial class GatewayInstances(UpstreamCircuitBreaker breaker, TimeProvider time, BackgroundHealth health, ILogger<GatewayInstances> logger,
    IConnectionMultiplexer? redis = null) : BackgroundService, Limits.ILiveInstances
{
    public const string Service = "heartbeat";
    private int _liveCount;

    private const string Key = "cp:instances";
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);
    private readonly string _id = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";
    private readonly DateTimeOffset _started = time.GetUtcNow();

    public string Id => _id;

    public int? LiveCount => Volatile.Read(ref _liveCount) is > 0 and var count ? count : null;

    public GatewayInstance Self() => new(_id, Environment.MachineName, Environment.ProcessId, _started, time.GetUtcNow(), breaker.Status());

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
        catch (Exception e) when (Limits.RedisFailures.Is(e))
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
        var backoff = new Backoff(Interval, TimeSpan.FromSeconds(10));
        while (!stoppingToken.IsCancellationRequested)
        {
            var wait = Interval;
            try
            {
                await redis.GetDatabase().HashSetAsync(Key, _id, JsonSerializer.Serialize(Self(), ManagementJsonContext.Default.GatewayInstance))
                    .WaitAsync(stoppingToken);
                Volatile.Write(ref _liveCount, (await ReadAsync(redis).WaitAsync(stoppingToken)).Count);
                backoff.Reset();
                if (health.Succeeded(Service))
                {
                    LogBack(logger);
                }
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // Redis down or slow (RedisConnectionException, RedisTimeoutException): this instance keeps serving.
                wait = backoff.Next();
                if (health.Failed(Service, e))
                {
                    LogFailed(logger, BackgroundHealth.Describe(e));
                }
            }
            try
            {
                await Task.Delay(wait, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (redis is not null)
        {
            try
            {
                await redis.GetDatabase().HashDeleteAsync(Key, _id).WaitAsync(cancellationToken);
            }
            catch (Exception e) when (e is RedisException or TimeoutException or OperationCanceledException)
            {
                // Other instances stop listing this one once its heartbeat is old.
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The gateway heartbeat cannot reach Redis ({Reason}); this instance keeps serving and retries")]
    private static partial void LogFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "The gateway heartbeat reaches Redis again")]
    private static partial void LogBack(ILogger logger);
}
