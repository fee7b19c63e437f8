using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace ClaudeProxy.Tests.Limits;

/// <summary>
/// While Postgres is away, admission does not ask it again for every request of a device Redis lacks: one failed read
/// rests Postgres for <see cref="AdmissionService.PostgresRetryDelay"/>, then it is tried again.
/// </summary>
public sealed class PostgresAwayTests(RedisAdmissionStoreConformanceTests.Server server) : IClassFixture<RedisAdmissionStoreConformanceTests.Server>, IDisposable
{
    private static readonly DateTimeOffset PeriodStart = new(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly UnreachableRecord _record = new();

    public void Dispose() => _services.Dispose();

    private AdmissionService Service()
    {
        var meters = _services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        var store = new RedisAdmissionStore(server.Connection);
        var options = new LimitOptions { FailureMode = RedisFailureMode.Closed };
        var size = new SettlementQueueSize();
        var retries = new SettlementRetries(store, options, new LimitMetrics(meters, size), size, TimeProvider.System, NullLogger<SettlementRetries>.Instance);
        return new AdmissionService(new InMemoryAdmissionStore(TimeProvider.System), options, _record, new Gateway.Telemetry.GatewayMetrics(meters),
            NullLogger<AdmissionService>.Instance, store, retries, _record, time: _time);
    }

    private static AdmissionRequest Request(string device, long cap = AdmissionRequest.NoCap) =>
        new(device, 1000, TimeSpan.FromMinutes(10), null, cap, cap == AdmissionRequest.NoCap ? 0 : 1000, "p0", PeriodStart, PeriodStart.AddMonths(1), 1);

    [Fact]
    public async Task Devices_redis_has_never_seen_are_let_through_without_asking_postgres_again_until_the_delay_has_passed()
    {
        var service = Service();
        for (var i = 0; i < 5; i++)
        {
            // New devices each time: Redis has no standing for any of them and asks for it.
            var decision = await service.AdmitAsync(Request(TestSecrets.DeviceId("away")), CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(AdmissionOutcome.Admitted, decision.Outcome);
        }
        Assert.Equal(1, _record.StandingReads);

        _time.Advance(AdmissionService.PostgresRetryDelay);
        Assert.Equal(AdmissionOutcome.Admitted, (await service.AdmitAsync(Request(TestSecrets.DeviceId("away")), CancellationToken.None)).Outcome);
        Assert.Equal(2, _record.StandingReads);
    }

    [Fact]
    public async Task A_capped_device_whose_spend_cannot_be_read_is_refused_at_once_while_postgres_rests()
    {
        var service = Service();
        var device = TestSecrets.DeviceId("capped");
        for (var i = 0; i < 5; i++)
        {
            var decision = await service.AdmitAsync(Request(device, cap: 1_000_000), CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(AdmissionOutcome.SpendUnknown, decision.Outcome);
        }
        // The standing read failed first and rested Postgres: the spend was never asked for in the window.
        Assert.Equal(1, _record.StandingReads + _record.SpendReads);

        _time.Advance(AdmissionService.PostgresRetryDelay);
        _record.Reachable = true;
        Assert.Equal(AdmissionOutcome.Admitted, (await service.AdmitAsync(Request(device, cap: 1_000_000), CancellationToken.None)).Outcome);
        Assert.True(_record.SpendReads >= 1);
    }

    /// <summary>The durable record while Postgres is away: every read fails, and is counted.</summary>
    private sealed class UnreachableRecord : IDeviceStandingSource, ISpendHistory
    {
        private int _standingReads;
        private int _spendReads;
        public int StandingReads => Volatile.Read(ref _standingReads);
        public int SpendReads => Volatile.Read(ref _spendReads);
        public volatile bool Reachable;
        public bool RefusesUnknown => false;

        public ValueTask<DeviceStanding> ReadAsync(string deviceId, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _standingReads);
            return Reachable ? ValueTask.FromResult(new DeviceStanding(DeviceStanding.Unknown, 0))
                : ValueTask.FromException<DeviceStanding>(new Npgsql.NpgsqlException("connection refused"));
        }

        public ValueTask<AdmissionOutcome> CheckLocallyAsync(string deviceId, int tokenPolicyVersion, CancellationToken cancellationToken) =>
            ValueTask.FromResult(AdmissionOutcome.Admitted);

        public ValueTask<long> SpentMicrosAsync(string deviceId, DateTimeOffset since, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _spendReads);
            return Reachable ? ValueTask.FromResult(0L) : ValueTask.FromException<long>(new Npgsql.NpgsqlException("connection refused"));
        }
    }
}
