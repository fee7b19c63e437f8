using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Management;

namespace ClaudeProxy.Tests.Management;

/// <summary>What the management API accepts as a device's policy (pure: no server).</summary>
public sealed class PolicyValidationTests
{
    [Fact]
    public void A_policy_within_every_bound_is_accepted_and_null_fields_are_left_alone()
    {
        Assert.Null(DevicesApi.Validate(new PolicyUpdate(["claude-sonnet-*", "claude-haiku-4-5"], 100, 50_000, 25.5m)));
        Assert.Null(DevicesApi.Validate(new PolicyUpdate(null, null, null, null)));
        Assert.Null(DevicesApi.Validate(new PolicyUpdate(["*"], 1, 1, 0m)));
        Assert.Null(DevicesApi.Validate(new PolicyUpdate([.. Enumerable.Range(0, 50).Select(i => $"claude-{i}")], 1_000_000, 1_000_000_000, 10_000_000m)));
    }

    [Theory]
    [MemberData(nameof(Refused))]
    public void A_policy_out_of_bounds_is_refused_naming_the_field(PolicyUpdate update, string field)
    {
        var error = DevicesApi.Validate(update);
        Assert.NotNull(error);
        Assert.StartsWith(field, error);
    }

    public static TheoryData<PolicyUpdate, string> Refused => new()
    {
        { new PolicyUpdate([], null, null, null), "models" },
        { new PolicyUpdate([.. Enumerable.Range(0, 51).Select(i => $"claude-{i}")], null, null, null), "models" },
        { new PolicyUpdate(["claude sonnet"], null, null, null), "models" },
        { new PolicyUpdate(["claude-\n"], null, null, null), "models" },
        { new PolicyUpdate([new string('a', 101)], null, null, null), "models" },
        { new PolicyUpdate([null!], null, null, null), "models" },
        { new PolicyUpdate(null, 0, null, null), "rate_limit" },
        { new PolicyUpdate(null, -1, null, null), "rate_limit" },
        { new PolicyUpdate(null, 1_000_001, null, null), "rate_limit" },
        { new PolicyUpdate(null, null, 0, null), "token_limit" },
        { new PolicyUpdate(null, null, int.MinValue, null), "token_limit" },
        { new PolicyUpdate(null, null, null, -0.01m), "spend_cap" },
        { new PolicyUpdate(null, null, null, 10_000_000.01m), "spend_cap" },
    };
}
