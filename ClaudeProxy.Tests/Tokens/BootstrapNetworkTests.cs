using System.Net;
using System.Text.Json;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Settings;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace ClaudeProxy.Tests.Tokens;

/// <summary>
/// BOOTSTRAP_ALLOWED_NETWORKS: devices enrol only from the networks the operator names (the office, the VPN). The
/// client's address is the one the trusted proxies report, and nobody else's forwarded headers are believed.
/// </summary>
public sealed class BootstrapNetworkTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static HttpRequestMessage Bootstrap(string deviceId, string? forwardedFor = null, string? body = null)
    {
        var request = Http.Post("/bootstrap", body ?? JsonSerializer.Serialize(new { device_id = deviceId, app_version = "test" }));
        if (forwardedFor is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor);
        }
        return request;
    }

    private async Task<(GatewayHost Gateway, string Db)> StartAsync(string allowed, string? trustedProxies = null)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s =>
        {
            s["BOOTSTRAP_ALLOWED_NETWORKS"] = allowed;
            s["TRUSTED_PROXIES"] = trustedProxies ?? "";
            // One bootstrap a minute per address: a refusal that used the budget would turn the next one into a 429.
            s["BOOTSTRAP_RATE_LIMIT"] = "1";
        });
        return (gateway, db);
    }

    private Task<long> DevicesAsync(string db) => fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices");

    private static async Task AssertRefusedAsync(HttpResponseMessage response)
    {
        var (_, message) = await Http.AssertErrorAsync(response, 403, "permission_error");
        Assert.Contains("bootstrap is not served to this network", message);
    }

    [Fact]
    public async Task A_client_in_an_allowed_network_bootstraps()
    {
        var (gateway, db) = await StartAsync("10.0.0.0/8, 127.0.0.0/8");
        using var response = await gateway.Client.SendAsync(Bootstrap(TestSecrets.DeviceId("net")));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, await DevicesAsync(db));
    }

    [Fact]
    public async Task A_client_outside_is_refused_before_its_body_or_budget_and_leaves_no_device()
    {
        var (gateway, db) = await StartAsync("10.0.0.0/8, 192.168.1.7");

        using (var first = await gateway.Client.SendAsync(Bootstrap(TestSecrets.DeviceId("net"))))
        {
            await AssertRefusedAsync(first);
        }
        // Neither a body the gateway would refuse as too large nor one it cannot parse is ever looked at.
        using (var huge = await gateway.Client.SendAsync(Bootstrap("x", body: new string('x', 64 * 1024))))
        {
            await AssertRefusedAsync(huge);
        }
        using (var garbage = await gateway.Client.SendAsync(Bootstrap("x", body: "{not json")))
        {
            await AssertRefusedAsync(garbage);
        }
        Assert.Equal(0, await DevicesAsync(db));
    }

    [Fact]
    public async Task A_forwarded_for_header_from_a_peer_that_is_not_a_trusted_proxy_is_not_believed()
    {
        var (gateway, db) = await StartAsync("10.0.0.0/8", trustedProxies: "10.9.9.9");
        using var response = await gateway.Client.SendAsync(Bootstrap(TestSecrets.DeviceId("net"), forwardedFor: "10.1.2.3"));
        await AssertRefusedAsync(response);
        Assert.Equal(0, await DevicesAsync(db));
    }

    [Fact]
    public async Task Behind_a_trusted_proxy_the_forwarded_client_address_decides()
    {
        var (gateway, db) = await StartAsync("10.0.0.0/8", trustedProxies: "127.0.0.1");

        using (var outside = await gateway.Client.SendAsync(Bootstrap(TestSecrets.DeviceId("net"), forwardedFor: "203.0.113.5")))
        {
            await AssertRefusedAsync(outside);
        }
        // The nearest untrusted hop is the client: an address the client put first in the chain counts for nothing.
        using (var chained = await gateway.Client.SendAsync(Bootstrap(TestSecrets.DeviceId("net"), forwardedFor: "10.1.2.3, 203.0.113.6")))
        {
            await AssertRefusedAsync(chained);
        }
        Assert.Equal(0, await DevicesAsync(db));

        var device = TestSecrets.DeviceId("net");
        string token;
        using (var inside = await gateway.Client.SendAsync(Bootstrap(device, forwardedFor: "10.1.2.3")))
        {
            Assert.Equal(HttpStatusCode.OK, inside.StatusCode);
            using var json = JsonDocument.Parse(await inside.Content.ReadAsStringAsync());
            token = json.RootElement.GetProperty("wrapper_token").GetString()!;
        }
        // Refresh is for devices already enrolled: a laptop away from the office renews its token anywhere.
        using (var refresh = Http.Post("/refresh", "{}", bearer: token))
        {
            refresh.Headers.TryAddWithoutValidation("X-Forwarded-For", "203.0.113.5");
            using var renewed = await gateway.Client.SendAsync(refresh);
            Assert.Equal(HttpStatusCode.OK, renewed.StatusCode);
        }
        // An IPv4 client reported as an IPv4-mapped IPv6 address is in the IPv4 network.
        using (var mapped = await gateway.Client.SendAsync(Bootstrap(TestSecrets.DeviceId("net"), forwardedFor: "::ffff:10.1.2.4")))
        {
            Assert.Equal(HttpStatusCode.OK, mapped.StatusCode);
        }
        Assert.Equal(2, await DevicesAsync(db));
    }

    [Theory]
    [InlineData("::ffff:10.1.2.3", "10.0.0.0/8", true)]
    [InlineData("10.1.2.3", "::ffff:10.0.0.0/104", true)]
    [InlineData("::ffff:192.168.1.1", "10.0.0.0/8", false)]
    [InlineData("fd00::1", "fd00::/8", true)]
    [InlineData("fd00::1", "10.0.0.0/8", false)]
    public void Ipv4_mapped_addresses_match_ipv4_networks(string address, string network, bool inside)
    {
        var config = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["BOOTSTRAP_ALLOWED_NETWORKS"] = network }).Build();
        Assert.Equal(inside, NetworkList.Contains(config.Settings().Networks(SettingsCatalogue.BootstrapAllowedNetworks), IPAddress.Parse(address)));
    }

    [Theory]
    [InlineData("10.0.0.0/33")]
    [InlineData("10.0.0.0/8, office")]
    [InlineData("10.0.0.300")]
    public async Task A_malformed_setting_stops_the_start_naming_it(string value)
    {
        var run = await GatewayProcess.RunAsync(new Dictionary<string, string>
        {
            ["ANTHROPIC_API_KEY"] = fx.MasterKey,
            ["JWT_SECRET"] = fx.JwtSecret,
            ["BOOTSTRAP_ALLOWED_NETWORKS"] = value,
        });
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("BOOTSTRAP_ALLOWED_NETWORKS must be a comma-separated list of networks", run.StdErr);
        Assert.DoesNotContain(fx.MasterKey, run.StdErr + run.StdOut);
        Assert.DoesNotContain(fx.JwtSecret, run.StdErr + run.StdOut);
    }
}
