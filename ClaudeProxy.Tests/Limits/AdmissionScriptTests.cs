using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Limits;

namespace ClaudeProxy.Tests.Limits;

/// <summary>
/// The admission script's outcome codes are written into it from <see cref="AdmissionOutcome"/>; this checks the
/// script as Redis runs it returns every script outcome and nothing the enum does not name.
/// </summary>
public sealed partial class AdmissionScriptTests
{
    [GeneratedRegex(@"return \{(?<code>-?\d+),")]
    private static partial Regex Return();

    [Fact]
    public void The_admission_script_returns_exactly_the_outcomes_of_the_enum()
    {
        var returned = Return().Matches(RedisAdmissionStore.AdmitScriptText).Select(m => int.Parse(m.Groups["code"].Value, System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
        var scriptOutcomes = Enum.GetValues<AdmissionOutcome>().Where(RedisAdmissionStore.IsScriptOutcome).Select(o => (int)o).ToHashSet();

        Assert.Equal(scriptOutcomes.Order(), returned.Order());
        // The outcomes decided outside the script are not script codes.
        Assert.DoesNotContain((int)AdmissionOutcome.Unavailable, returned);
        Assert.DoesNotContain((int)AdmissionOutcome.SpendUnknown, returned);
    }

    [Fact]
    public void Every_return_of_the_admission_script_has_the_eight_fields_the_reader_takes()
    {
        var returns = Regex.Matches(RedisAdmissionStore.AdmitScriptText, @"return \{(?<fields>[^}]*)\}");
        Assert.NotEmpty(returns);
        Assert.All(returns, r => Assert.Equal(8, r.Groups["fields"].Value.Split(',').Length));
    }
}
