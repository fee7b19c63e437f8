using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Limits;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Limits;

public sealed class LimitOptionsTests
{
    private static LimitOptions Load(string? instances) => LimitOptions.Load(new ConfigurationBuilder()
        .AddInMemoryCollection(new Dictionary<string, string?> { ["REDIS_FAILOPEN_INSTANCES"] = instances }).Build());

    [Fact]
    public void The_fail_open_share_is_counted_unless_pinned()
    {
        Assert.Null(Load(null).FailOpenInstances);
        Assert.Null(Load("").FailOpenInstances);
        Assert.Equal(3, Load("3").FailOpenInstances);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-2")]
    [InlineData("many")]
    [InlineData("1e9")]
    public void A_nonsensical_fail_open_share_stops_the_start_naming_the_setting(string value)
    {
        var error = Assert.Throws<GatewayConfigurationException>(() => Load(value));
        Assert.Contains("REDIS_FAILOPEN_INSTANCES", error.Message);
    }
}
