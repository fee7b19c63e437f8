using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Limits;

/// <summary>
/// The same admission scenarios against the shared Redis store and the in-process one: they must give the same
/// answers. Each scenario goes through <see cref="AdmissionService"/>, the one caller of both stores, wired to one store
/// only, and checks which store decided, so a Redis failure can never pass as the in-process answer.
/// </summary>
public abstract class AdmissionStoreConformanceTests : IDisposable
{
    private static readonly DateTimeOffset PeriodStart = new(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    /// <summary>Standing and spend as the durable record holds them, for the stores to be seeded from.</summary>
    protected TestRecord Record { get; } = new();

    protected System.Diagnostics.Metrics.IMeterFactory Meters => _services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();

    /// <summary>Where an admission must have been decided.</summary>
    protected abstract AdmissionStore Store { get; }

    /// <summary>The admission service wired to the store under test alone.</summary>
    protected abstract AdmissionService Service { get; }

    /// <summary>Lets <paramref name="span"/> pass on the store's clock.</summary>
    protected abstract Task PassAsync(TimeSpan span);

    /// <summary>Waits until every settlement made so far has reached the store.</summary>
    protected virtual Task SettledAsync() => Task.CompletedTask;

    /// <summary>An operator's change of a device's standing, as the gateway hands it to the store.</summary>
    protected abstract Task ChangeStandingAsync(string deviceId, DeviceStanding standing);

    protected static AdmissionRequest Request(string device, int rateLimit = 1000, TimeSpan? window = null, int? tokenLimit = null,
        long? cap = null, long reserve = 0, int period = 0, int policyVersion = 1) =>
        new(device, rateLimit, window ?? TimeSpan.FromMinutes(10), tokenLimit, reserve,
            cap is long c ? [Cap(SpendCapKind.Device, RedisAdmissionStore.SpendKey(device, "p" + period), device, c, period)] : [], policyVersion);

    protected static SpendCap Cap(SpendCapKind kind, string counter, string subject, long capMicros, int period = 0) =>
        new(kind, counter, subject, kind.ToString(), capMicros, SpendPeriod.Month, "UTC", PeriodStart.AddMonths(period), PeriodStart.AddMonths(period + 1));

    private async Task<Admission> AdmitAsync(AdmissionRequest request)
    {
        var decision = await Service.AdmitAsync(request, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        if (decision.Outcome is AdmissionOutcome.Admitted or AdmissionOutcome.RateLimited or AdmissionOutcome.TokenBudgetExhausted or AdmissionOutcome.SpendCapReached)
        {
            Assert.Equal(decision.Outcome == AdmissionOutcome.Admitted || Store == AdmissionStore.Redis ? Store : AdmissionStore.None, decision.Store);
        }
        return decision;
    }

    [Fact]
    public async Task The_request_limit_admits_up_to_the_limit_in_its_window_and_again_once_the_oldest_has_left()
    {
        var window = TimeSpan.FromMilliseconds(1500);
        var request = Request(TestSecrets.DeviceId(), rateLimit: 3, window: window);
        for (var remaining = 2; remaining >= 0; remaining--)
        {
            var admitted = await AdmitAsync(request);
            Assert.Equal(AdmissionOutcome.Admitted, admitted.Outcome);
            Assert.Equal(new { Allowed = true, Limit = 3, Remaining = remaining }, new { admitted.Rate.Allowed, admitted.Rate.Limit, admitted.Rate.Remaining });
        }

        var refused = await AdmitAsync(request);
        Assert.Equal(AdmissionOutcome.RateLimited, refused.Outcome);
        Assert.Equal(new { Allowed = false, Limit = 3, Remaining = 0 }, new { refused.Rate.Allowed, refused.Rate.Limit, refused.Rate.Remaining });
        Assert.InRange(refused.RetryAfter, TimeSpan.FromTicks(1), window);
        Assert.Equal(refused.RetryAfter, refused.Rate.RetryAfter);

        await PassAsync(refused.RetryAfter + TimeSpan.FromMilliseconds(50));
        Assert.Equal(AdmissionOutcome.Admitted, (await AdmitAsync(request)).Outcome);
    }

    [Fact]
    public async Task The_token_budget_refuses_once_the_settled_tokens_reach_it()
    {
        var request = Request(TestSecrets.DeviceId(), tokenLimit: 100);
        var first = await AdmitAsync(request);
        Assert.Equal(AdmissionOutcome.Admitted, first.Outcome);
        Service.Settle(request, first, 0, 60);

        var second = await AdmitAsync(request);
        Assert.Equal(AdmissionOutcome.Admitted, second.Outcome);
        Service.Settle(request, second, 0, 50);

        var refused = await AdmitAsync(request);
        Assert.Equal(AdmissionOutcome.TokenBudgetExhausted, refused.Outcome);
        Assert.Equal(110, refused.TokensUsed);
        // The request limit is not what refused it.
        Assert.True(refused.Rate.Allowed);
        Assert.Equal(998, refused.Rate.Remaining);
        Assert.InRange(refused.RetryAfter, TimeSpan.FromSeconds(59), TimeSpan.FromSeconds(61));
    }

    [Fact]
    public async Task A_reservation_counts_against_the_cap_until_it_is_settled_at_the_actual_cost()
    {
        var request = Request(TestSecrets.DeviceId(), cap: 1000, reserve: 600);
        var first = await AdmitAsync(request);
        Assert.Equal(AdmissionOutcome.Admitted, first.Outcome);
        Assert.True(first.Reserved);
        Assert.Equal(600, first.SpentMicros);

        var refused = await AdmitAsync(request);
        Assert.Equal(AdmissionOutcome.SpendCapReached, refused.Outcome);
        Assert.Equal(600, refused.SpentMicros);
        Assert.False(refused.Reserved);

        Service.Settle(request, first, actualMicros: 100, tokens: 0);
        var after = await AdmitAsync(request);
        Assert.Equal(AdmissionOutcome.Admitted, after.Outcome);
        Assert.Equal(700, after.SpentMicros);
        // Up to the cap exactly is admitted; one micro-dollar more is not.
        Assert.Equal(1000, (await AdmitAsync(request with { ReserveMicros = 300 })).SpentMicros);
        Assert.Equal(AdmissionOutcome.SpendCapReached, (await AdmitAsync(request with { ReserveMicros = 1 })).Outcome);

        // A device without a cap reserves nothing and is never refused for spend.
        var uncapped = await AdmitAsync(Request(request.DeviceId, reserve: 600));
        Assert.Equal(AdmissionOutcome.Admitted, uncapped.Outcome);
        Assert.False(uncapped.Reserved);
    }

    [Fact]
    public async Task Concurrent_reservations_never_take_a_device_past_its_cap()
    {
        var request = Request(TestSecrets.DeviceId(), cap: 1000, reserve: 100);
        Record.Spent[(request.DeviceId, request.Caps[0].PeriodStart)] = 250;

        var decisions = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => Task.Run(() => AdmitAsync(request))));

        // 250 already spent leaves room for exactly seven reservations of 100.
        Assert.Equal(7, decisions.Count(d => d.Outcome == AdmissionOutcome.Admitted));
        Assert.Equal(33, decisions.Count(d => d.Outcome == AdmissionOutcome.SpendCapReached));
        Assert.Equal(950, decisions.Max(d => d.SpentMicros));
    }

    [Fact]
    public async Task Every_cap_of_a_request_is_reserved_or_none_and_each_is_settled_to_the_real_cost()
    {
        var pool = "grp_" + Guid.NewGuid().ToString("N")[..16];
        var poolCap = Cap(SpendCapKind.GroupPool, RedisAdmissionStore.PoolKey(pool, "p0"), pool, 1000);
        AdmissionRequest Member(string device)
        {
            var own = Request(device, cap: 5000, reserve: 400);
            return own with { Caps = [own.Caps[0], poolCap] };
        }
        var alice = Member(TestSecrets.DeviceId());
        var bob = Member(TestSecrets.DeviceId());
        Record.Spent[(pool, poolCap.PeriodStart)] = 100;

        // The pool (100 spent of 1,000) has room for two reservations of 400, whoever makes them.
        var first = await AdmitAsync(alice);
        var second = await AdmitAsync(bob);
        Assert.Equal([AdmissionOutcome.Admitted, AdmissionOutcome.Admitted], new[] { first.Outcome, second.Outcome });
        Assert.Equal([400, 900], second.Spent!);
        var refused = await AdmitAsync(alice);
        Assert.Equal(AdmissionOutcome.SpendCapReached, refused.Outcome);
        Assert.Equal(1, refused.Binding);
        Assert.Equal(900, refused.SpentMicros);

        // Nothing of the refusal was reserved: settling both at 50 leaves room for exactly two more. Alice's settlement
        // rides on her next admission; Bob's goes on its own once no admission of his has taken it.
        Service.Settle(alice, first, actualMicros: 50, tokens: 0);
        Service.Settle(bob, second, actualMicros: 50, tokens: 0);
        await SettledAsync();
        var third = await AdmitAsync(alice);
        Assert.Equal(AdmissionOutcome.Admitted, third.Outcome);
        Assert.Equal([450, 600], third.Spent!);
        Assert.Equal(AdmissionOutcome.Admitted, (await AdmitAsync(bob)).Outcome);
        Assert.Equal(AdmissionOutcome.SpendCapReached, (await AdmitAsync(bob)).Outcome);
    }

    [Theory]
    [InlineData(DeviceStanding.Revoked, 1, 1, false, AdmissionOutcome.Revoked)]
    [InlineData(DeviceStanding.Pending, 1, 1, false, AdmissionOutcome.Pending)]
    [InlineData(DeviceStanding.Active, 2, 1, false, AdmissionOutcome.PolicyStale)]
    [InlineData(DeviceStanding.Active, 2, 2, false, AdmissionOutcome.Admitted)]
    [InlineData(DeviceStanding.Active, 1, 2, false, AdmissionOutcome.Admitted)]
    [InlineData(DeviceStanding.Unknown, 0, 1, true, AdmissionOutcome.UnknownDevice)]
    [InlineData(DeviceStanding.Unknown, 0, 1, false, AdmissionOutcome.Admitted)]
    public async Task Standing_is_checked_before_any_limit(string status, int deviceVersion, int tokenVersion, bool refuseUnknown, AdmissionOutcome expected)
    {
        var device = TestSecrets.DeviceId();
        Record.RefusesUnknown = refuseUnknown;
        Record.Standings[device] = new DeviceStanding(status, deviceVersion);

        var decision = await AdmitAsync(Request(device, rateLimit: 1, policyVersion: tokenVersion));
        Assert.Equal(expected, decision.Outcome);
        // A refusal for standing takes nothing: once an operator lets the device in, its one request is admitted.
        if (expected is not (AdmissionOutcome.Admitted or AdmissionOutcome.PolicyStale))
        {
            await ChangeStandingAsync(device, new DeviceStanding(DeviceStanding.Active, Math.Max(deviceVersion, tokenVersion)));
            Assert.Equal(AdmissionOutcome.Admitted, (await AdmitAsync(Request(device, rateLimit: 1, policyVersion: tokenVersion))).Outcome);
        }
    }

    [Fact]
    public async Task A_device_revoked_after_it_was_admitted_is_refused_from_then_on()
    {
        var request = Request(TestSecrets.DeviceId());
        Record.Standings[request.DeviceId] = new DeviceStanding(DeviceStanding.Active, 1);
        Assert.Equal(AdmissionOutcome.Admitted, (await AdmitAsync(request)).Outcome);

        await ChangeStandingAsync(request.DeviceId, new DeviceStanding(DeviceStanding.Revoked, 2));
        Assert.Equal(AdmissionOutcome.Revoked, (await AdmitAsync(request)).Outcome);
    }

    [Fact]
    public async Task A_new_spend_period_starts_from_what_the_record_holds_for_it()
    {
        var device = TestSecrets.DeviceId();
        var november = Request(device, cap: 1000, reserve: 900);
        Assert.Equal(900, (await AdmitAsync(november)).SpentMicros);
        Assert.Equal(AdmissionOutcome.SpendCapReached, (await AdmitAsync(november with { ReserveMicros = 200 })).Outcome);

        var december = Request(device, cap: 1000, reserve: 200, period: 1);
        Record.Spent[(device, december.Caps[0].PeriodStart)] = 300;
        var admitted = await AdmitAsync(december);
        Assert.Equal(AdmissionOutcome.Admitted, admitted.Outcome);
        Assert.Equal(500, admitted.SpentMicros);
    }

    public void Dispose() => _services.Dispose();

    /// <summary>The durable record (Postgres in the gateway): standing by device, spend by device and period start.</summary>
    protected sealed class TestRecord : IDeviceStandingSource, ISpendHistory
    {
        public System.Collections.Concurrent.ConcurrentDictionary<string, DeviceStanding> Standings { get; } = new();
        public System.Collections.Concurrent.ConcurrentDictionary<(string, DateTimeOffset), long> Spent { get; } = new();
        public bool RefusesUnknown { get; set; }

        public ValueTask<DeviceStanding> ReadAsync(string deviceId, CancellationToken cancellationToken) =>
            ValueTask.FromResult(Standings.GetValueOrDefault(deviceId, new DeviceStanding(DeviceStanding.Unknown, 0)));

        public async ValueTask<AdmissionOutcome> CheckLocallyAsync(string deviceId, int tokenPolicyVersion, CancellationToken cancellationToken) =>
            (await ReadAsync(deviceId, cancellationToken)).Check(tokenPolicyVersion, RefusesUnknown);

        public ValueTask<long> SpentMicrosAsync(SpendCapKind kind, string subject, DateTimeOffset since, CancellationToken cancellationToken) =>
            ValueTask.FromResult(Spent.GetValueOrDefault((subject, since)));
    }
}

/// <summary>The scenarios against the admission script in a real redis-server.</summary>
public sealed class RedisAdmissionStoreConformanceTests : AdmissionStoreConformanceTests, IClassFixture<RedisAdmissionStoreConformanceTests.Server>, IAsyncLifetime
{
    private readonly RedisAdmissionStore _store;
    private readonly SettlementRetries _retries;
    private readonly Server _server;

    public RedisAdmissionStoreConformanceTests(Server server)
    {
        _server = server;
        _store = new RedisAdmissionStore(server.Connection);
        (Service, _retries) = Create(new LimitOptions { FailureMode = RedisFailureMode.Closed });
    }

    private (AdmissionService, SettlementRetries) Create(LimitOptions options)
    {
        var size = new SettlementQueueSize();
        var limitMetrics = new LimitMetrics(Meters, size);
        var retries = new SettlementRetries(_store, options, limitMetrics, size, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<SettlementRetries>.Instance);
        return (new AdmissionService(new InMemoryAdmissionStore(TimeProvider.System), options, Record, new Gateway.Telemetry.GatewayMetrics(Meters),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<AdmissionService>.Instance, _store, retries, Record), retries);
    }

    protected override AdmissionStore Store => AdmissionStore.Redis;
    protected override AdmissionService Service { get; }

    public Task InitializeAsync() => _retries.StartAsync(CancellationToken.None);

    public Task DisposeAsync() => _retries.StopAsync(CancellationToken.None);

    protected override Task SettledAsync() => _retries.SettledAsync().WaitAsync(TimeSpan.FromSeconds(10));

    private async Task<long> ScriptsRunAsync()
    {
        var info = await _server.Admin.GetServers()[0].InfoAsync("commandstats");
        return info.SelectMany(g => g).Where(kv => kv.Key is "cmdstat_eval" or "cmdstat_evalsha")
            .Sum(kv => long.Parse(kv.Value.Split(',')[0]["calls=".Length..], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Each_settlement_rides_on_its_devices_next_admission_so_a_busy_device_costs_one_script_per_request()
    {
        // A delay no test waits out: what no admission carried goes at shutdown.
        var (service, retries) = Create(new LimitOptions { FailureMode = RedisFailureMode.Closed, SettlementDelay = TimeSpan.FromHours(1) });
        await retries.StartAsync(CancellationToken.None);
        var request = Request(TestSecrets.DeviceId(), tokenLimit: 1_000_000, cap: 1_000_000, reserve: 1000);
        long before = 0;
        for (var i = 0; i < 20; i++)
        {
            if (i == 1)
            {
                // The device's first admission also asked for its seeds; from the second on, one script each.
                before = await ScriptsRunAsync();
            }
            var admitted = await service.AdmitAsync(request, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(AdmissionOutcome.Admitted, admitted.Outcome);
            // Each admission already saw every request before it settled at 10, none still reserved at 1,000.
            Assert.Equal(i * 10 + 1000, admitted.SpentMicros);
            service.Settle(request, admitted, actualMicros: 10, tokens: 7);
        }
        Assert.Equal(19, await ScriptsRunAsync() - before);
        // The twentieth settlement had no admission to ride on: it goes on its own, at the latest when the instance stops.
        await retries.StopAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(20, await ScriptsRunAsync() - before);
        var db = _server.Connection.GetDatabase();
        Assert.Equal(200, (long)await db.HashGetAsync(request.Caps[0].Counter, "s"));
        Assert.Equal(140, (long)await db.HashGetAsync(RedisAdmissionStore.TokenKey(request.DeviceId), "n"));
    }

    [Fact]
    public async Task Concurrent_requests_of_many_devices_sharing_a_pool_are_each_settled_exactly_once()
    {
        var pool = "grp_" + Guid.NewGuid().ToString("N")[..16];
        var poolCap = Cap(SpendCapKind.GroupPool, RedisAdmissionStore.PoolKey(pool, "p0"), pool, 1_000_000_000);
        var devices = Enumerable.Range(0, 8).Select(_ => TestSecrets.DeviceId()).ToArray();
        var requests = devices.Select(d => Request(d, cap: 1_000_000_000, reserve: 5000, tokenLimit: 1_000_000_000))
            .Select(r => r with { Caps = [r.Caps[0], poolCap] }).ToArray();

        await Task.WhenAll(Enumerable.Range(0, 400).Select(i => Task.Run(async () =>
        {
            var request = requests[i % requests.Length];
            var admitted = await Service.AdmitAsync(request, CancellationToken.None);
            Assert.Equal(AdmissionOutcome.Admitted, admitted.Outcome);
            Service.Settle(request, admitted, actualMicros: 1 + i % 7, tokens: 3);
        }))).WaitAsync(TimeSpan.FromSeconds(30));
        await SettledAsync();

        // Every reservation was replaced by its actual cost, once: the pool holds exactly the sum of what was spent.
        var expected = Enumerable.Range(0, 400).Sum(i => 1L + i % 7);
        var db = _server.Connection.GetDatabase();
        Assert.Equal(expected, (long)await db.HashGetAsync(poolCap.Counter, "s"));
        for (var d = 0; d < devices.Length; d++)
        {
            var own = Enumerable.Range(0, 400).Where(i => i % devices.Length == d).Sum(i => 1L + i % 7);
            Assert.Equal(own, (long)await db.HashGetAsync(requests[d].Caps[0].Counter, "s"));
        }
    }

    [Fact]
    public async Task The_token_budget_counts_only_the_last_minute_and_drops_older_seconds()
    {
        var request = Request(TestSecrets.DeviceId(), tokenLimit: 100);
        var db = _server.Connection.GetDatabase();
        var now = (await _server.Connection.GetServers()[0].TimeAsync()).ToUniversalTime();
        var second = new DateTimeOffset(now, TimeSpan.Zero).ToUnixTimeSeconds();
        var key = RedisAdmissionStore.TokenKey(request.DeviceId);
        // Two minutes ago 5,000 tokens, ten seconds ago 30, and no sum counted yet: only the 30 are within the minute.
        await db.HashSetAsync(key, [new(second - 120, 5000), new(second - 10, 30)]);
        var admitted = await Service.AdmitAsync(request, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(AdmissionOutcome.Admitted, admitted.Outcome);
        Assert.False(await db.HashExistsAsync(key, second - 120));
        Assert.Equal(30, (long)await db.HashGetAsync(key, "n"));

        // A sum whose oldest second has left the minute is counted again rather than believed.
        await db.HashSetAsync(key, [new("n", 5030), new("o", second - 120), new(second - 120, 5000)]);
        Assert.Equal(AdmissionOutcome.Admitted, (await Service.AdmitAsync(request, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10))).Outcome);
        Assert.Equal(30, (long)await db.HashGetAsync(key, "n"));

        // Settled tokens keep the sum: 30 + 75 is past the budget of 100.
        Service.Settle(request, admitted, 0, 75);
        await SettledAsync();
        var refused = await Service.AdmitAsync(request, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(AdmissionOutcome.TokenBudgetExhausted, refused.Outcome);
        Assert.Equal(105, refused.TokensUsed);
        // The ten-second-old tokens are the oldest: the budget has room again 50 s from now.
        Assert.InRange(refused.RetryAfter, TimeSpan.FromSeconds(49), TimeSpan.FromSeconds(52));
    }

    // Redis keeps its own clock: the window is left to pass.
    protected override Task PassAsync(TimeSpan span) => Task.Delay(span);

    protected override async Task ChangeStandingAsync(string deviceId, DeviceStanding standing)
    {
        Record.Standings[deviceId] = standing;
        await _store.WriteStandingAsync(deviceId, standing, operatorChange: true).WaitAsync(TimeSpan.FromSeconds(10));
    }

    public sealed class Server : IAsyncLifetime
    {
        private RedisServer _redis = null!;
        public StackExchange.Redis.IConnectionMultiplexer Connection { get; private set; } = null!;

        /// <summary>A second connection, allowed the server's own commands (INFO).</summary>
        public StackExchange.Redis.IConnectionMultiplexer Admin { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            _redis = await RedisServer.StartAsync();
            Connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(_redis.ConnectionString).WaitAsync(TimeSpan.FromSeconds(20));
            Admin = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(_redis.ConnectionString + ",allowAdmin=true").WaitAsync(TimeSpan.FromSeconds(20));
        }

        public async Task DisposeAsync()
        {
            await Admin.DisposeAsync();
            await Connection.DisposeAsync();
            await _redis.DisposeAsync();
        }
    }
}

/// <summary>The scenarios against the in-process store, on a clock the test moves.</summary>
public sealed class InMemoryAdmissionStoreConformanceTests : AdmissionStoreConformanceTests
{
    private readonly Microsoft.Extensions.Time.Testing.FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    public InMemoryAdmissionStoreConformanceTests()
    {
        var options = new LimitOptions();
        Service = new AdmissionService(new InMemoryAdmissionStore(_time), options, Record, new Gateway.Telemetry.GatewayMetrics(Meters),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<AdmissionService>.Instance, standing: Record);
    }

    protected override AdmissionStore Store => AdmissionStore.Memory;
    protected override AdmissionService Service { get; }

    protected override Task PassAsync(TimeSpan span)
    {
        _time.Advance(span);
        return Task.CompletedTask;
    }

    // Without Redis the standing is read where the gateway keeps it, and the record is that here.
    protected override Task ChangeStandingAsync(string deviceId, DeviceStanding standing)
    {
        Record.Standings[deviceId] = standing;
        return Task.CompletedTask;
    }
}
