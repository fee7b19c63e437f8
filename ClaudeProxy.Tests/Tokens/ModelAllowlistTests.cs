using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Tests.Tokens;

/// <summary>The model globs a device may use (pure: no server).</summary>
public sealed class ModelAllowlistTests
{
    [Theory]
    [InlineData("claude-*", "claude-sonnet-4-5-20250929", true)]
    [InlineData("claude-sonnet-*", "claude-opus-4-1", false)]
    [InlineData("claude-sonnet-4-5", "claude-sonnet-4-5", true)]
    [InlineData("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", false)]
    [InlineData("*-haiku-*", "claude-3-5-haiku-20241022", true)]
    [InlineData("claude-?-opus", "claude-3-opus", true)]
    [InlineData("claude-?-opus", "claude-35-opus", false)]
    [InlineData("*", "", true)]
    [InlineData("claude-*", "", false)]
    [InlineData("a*b*c", "aXbYc", true)]
    [InlineData("a*b*c", "aXbYcZ", false)]
    [InlineData("CLAUDE-*", "claude-sonnet-4-5", false)]
    public void A_glob_matches_the_whole_model_id(string pattern, string model, bool allowed) =>
        Assert.Equal(allowed, new ModelAllowlist([pattern]).Allows(model));

    [Fact]
    public void Any_pattern_of_the_list_admits_and_an_empty_list_admits_nothing()
    {
        var list = new ModelAllowlist(["claude-haiku-*", "claude-sonnet-4-5"]);
        Assert.True(list.Allows("claude-haiku-4-5"));
        Assert.True(list.Allows("claude-sonnet-4-5"));
        Assert.False(list.Allows("claude-opus-4-1"));
        Assert.False(new ModelAllowlist([]).Allows("claude-sonnet-4-5"));
    }

    [Fact]
    public void A_hostile_pattern_and_model_stay_linear()
    {
        // Backtracking on every star would take exponential time here; the matcher keeps only the last star.
        var pattern = string.Concat(Enumerable.Repeat("a*", 40)) + "b";
        var model = new string('a', 10_000);
        Assert.False(ModelAllowlist.Glob(pattern, model));
        Assert.True(ModelAllowlist.Glob(pattern, model + "b"));
    }
}
