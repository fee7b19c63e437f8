using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Settings;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Configuration;

public sealed class ConfigurationTests
{
    [Theory]
    [InlineData("ANTHROPIC_API_KEY")]
    [InlineData("JWT_SECRET")]
    public async Task A_missing_required_setting_stops_the_process_with_one_line_naming_it(string missing)
    {
        var environment = new Dictionary<string, string>
        {
            ["ANTHROPIC_API_KEY"] = TestSecrets.MasterKey(),
            ["JWT_SECRET"] = TestSecrets.JwtSecret(),
            ["PORT"] = "0",
            ["HOST"] = "127.0.0.1",
        };
        environment.Remove(missing);
        var (exitCode, stdout, stderr) = await GatewayProcess.RunAsync(environment);
        Assert.NotEqual(0, exitCode);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var line = Assert.Single(lines);
        Assert.Contains(missing, line);
        Assert.DoesNotContain("   at ", stdout + stderr);
    }

    [Fact]
    public async Task A_short_jwt_secret_is_refused_without_echoing_it()
    {
        var shortSecret = "tooshort-" + Guid.NewGuid().ToString("N")[..8];
        var (exitCode, stdout, stderr) = await GatewayProcess.RunAsync(new Dictionary<string, string>
        {
            ["ANTHROPIC_API_KEY"] = TestSecrets.MasterKey(),
            ["JWT_SECRET"] = shortSecret,
            ["PORT"] = "0",
        });
        Assert.NotEqual(0, exitCode);
        Assert.Contains("JWT_SECRET", stderr);
        Assert.Contains("32 bytes", stderr);
        Assert.DoesNotContain(shortSecret, stdout + stderr);
    }

    [Fact]
    public void Defaults_follow_the_seed()
    {
        var options = GatewayOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ANTHROPIC_API_KEY"] = "k",
            ["JWT_SECRET"] = TestSecrets.JwtSecret(),
        }).Build());
        Assert.Null(options.Port);
        Assert.Equal(TimeSpan.FromHours(24), options.JwtLifetime);
        Assert.Equal(2 * 1024 * 1024, options.MaxPayloadSize);
        Assert.Equal(100, options.RateLimitMax);
        Assert.Equal(TimeSpan.FromMilliseconds(60_000), options.RateLimitWindow);
        Assert.Equal(["claude-*"], options.DefaultModels);
        Assert.Null(options.DefaultSpendCap);
        Assert.Equal(new Uri("https://api.anthropic.com"), options.AnthropicBaseUrl);
        Assert.Equal(TimeSpan.FromMinutes(10), options.UpstreamTimeout);
    }

    [Theory]
    [InlineData("2mb", 2 * 1024 * 1024)]
    [InlineData("512kb", 512 * 1024)]
    [InlineData("1000", 1000)]
    public void Payload_sizes_accept_units(string raw, long bytes)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["MAX_PAYLOAD_SIZE"] = raw }).Build();
        Assert.Equal(bytes, config.Settings().Size(SettingsCatalogue.MaxPayloadSize));
    }

    [Fact]
    public void A_bad_number_names_its_setting()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ANTHROPIC_API_KEY"] = "k", ["JWT_SECRET"] = TestSecrets.JwtSecret(), ["RATE_LIMIT_MAX"] = "lots",
        }).Build();
        var error = Assert.Throws<GatewayConfigurationException>(() => GatewayOptions.Load(config));
        Assert.Contains("RATE_LIMIT_MAX", error.Message);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("1001")]
    [InlineData("soon")]
    [InlineData("1e9")]
    public void A_settlement_delay_out_of_range_names_its_setting(string raw)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["SETTLEMENT_DELAY_MS"] = raw }).Build();
        var error = Assert.Throws<GatewayConfigurationException>(() => Gateway.Limits.LimitOptions.Load(config));
        Assert.Contains("SETTLEMENT_DELAY_MS", error.Message);
    }

    [Theory]
    [InlineData(null, 2)]
    [InlineData("0", 0)]
    [InlineData("50", 50)]
    public void The_settlement_delay_defaults_to_two_milliseconds_and_zero_turns_it_off(string? raw, int milliseconds)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["SETTLEMENT_DELAY_MS"] = raw }).Build();
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), Gateway.Limits.LimitOptions.Load(config).SettlementDelay);
    }
}
