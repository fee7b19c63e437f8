using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Telemetry;
using Microsoft.EntityFrameworkCore;
using StackExchange.Redis;

namespace ClaudeProxy.Gateway.Policies;

/// <summary>
/// Keeps this instance's <see cref="PolicySnapshot"/>: loaded from Postgres before the instance serves, again at once
/// when an operator changes groups or spend limits here (<see cref="ChangedAsync"/>) or on another instance (Redis
/// pub/sub), and every <see cref="RefreshInterval"/> in case a message was missed. While Postgres cannot be read the
/// last snapshot stays in force. Without Postgres there are no groups or spend limits, and the snapshot stays empty.
/// </summary>
public sealed partial class PolicyStore(
    BackgroundHealth health,
    ILogger<PolicyStore> logger,
    IDbContextFactory<GatewayDbContext>? contexts = null,
    IConnectionMultiplexer? redis = null) : PolicyChanges, IHostedService, IDisposable
{
    public const string Service = "policy-reloader";
    public static readonly RedisChannel Channel = RedisChannel.Literal("claudeproxy:policy-changed");
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(30);

    private readonly SemaphoreSlim _loading = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _wake = new(0, 1);
    private PolicySnapshot _current = PolicySnapshot.Empty;
    private long _versions;
    private Task _background = Task.CompletedTask;

    public PolicySnapshot Current => Volatile.Read(ref _current);

    public override async Task ChangedAsync(CancellationToken cancellationToken)
    {
        await ReloadAsync(cancellationToken);
        if (redis is not null)
        {
            try
            {
                await redis.GetSubscriber().PublishAsync(Channel, "changed").WaitAsync(cancellationToken);
            }
            catch (Exception e) when (Limits.RedisFailures.Is(e))
            {
                LogPublishFailed(logger, e.GetType().Name);
            }
        }
    }

    /// <summary>Reads every group, membership and spend limit; the newest load wins.</summary>
    public async Task ReloadAsync(CancellationToken cancellationToken)
    {
        if (contexts is null)
        {
            return;
        }
        await _loading.WaitAsync(cancellationToken);
        try
        {
            await using var db = await contexts.CreateDbContextAsync(cancellationToken);
            var snapshot = await PolicySnapshot.LoadAsync(db, Interlocked.Increment(ref _versions), cancellationToken);
            Volatile.Write(ref _current, snapshot);
        }
        finally
        {
            _loading.Release();
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (contexts is null)
        {
            return;
        }
        try
        {
            // Before the first request: a pool that is not known yet would not be enforced.
            await ReloadAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
            health.Succeeded(Service);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            health.Failed(Service, e);
            LogLoadFailed(logger, BackgroundHealth.Describe(e));
        }
        if (redis is not null)
        {
            _ = RedisSubscription.KeepAsync(redis.GetSubscriber(), Channel, (_, _) => Wake(), health, Service + "-subscriber", logger, _stopping.Token);
        }
        _background = RefreshAsync(_stopping.Token);
    }

    private void Wake()
    {
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // A reload is already due.
        }
    }

    private async Task RefreshAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await _wake.WaitAsync(RefreshInterval, stoppingToken);
                await ReloadAsync(stoppingToken);
                if (health.Succeeded(Service))
                {
                    LogLoaded(logger);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (health.Failed(Service, e))
                {
                    LogLoadFailed(logger, BackgroundHealth.Describe(e));
                }
            }
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _background.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    public void Dispose()
    {
        _stopping.Dispose();
        _loading.Dispose();
        _wake.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Groups and spend limits could not be read from Postgres ({Reason}): the last ones read stay in force")]
    private static partial void LogLoadFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Groups and spend limits are read from Postgres again")]
    private static partial void LogLoaded(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A change of groups or spend limits could not be announced through Redis ({Reason}): other instances see it within their refresh interval")]
    private static partial void LogPublishFailed(ILogger logger, string reason);
}
