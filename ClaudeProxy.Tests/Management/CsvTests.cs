using ClaudeProxy.Gateway.Usage;

namespace ClaudeProxy.Tests.Management;

/// <summary>A spreadsheet opening the usage export never runs a cell as a formula.</summary>
public sealed class CsvTests
{
    [Theory]
    [InlineData("=HYPERLINK(\"http://x\")")]
    [InlineData("+1+1")]
    [InlineData("-2+3")]
    [InlineData("@SUM(A1)")]
    [InlineData("\t=1+1")]
    [InlineData("\r=1+1")]
    public void Cells_that_a_spreadsheet_would_evaluate_are_defused(string value)
    {
        var cell = UsageColumns.CsvText(value);
        var unquoted = cell.StartsWith('"') ? cell[1..^1].Replace("\"\"", "\"") : cell;
        Assert.StartsWith("'", unquoted);
        Assert.Equal(value, unquoted[1..]);
    }

    [Theory]
    [InlineData("claude-sonnet-4-5", "claude-sonnet-4-5")]
    [InlineData("a,b", "\"a,b\"")]
    [InlineData("say \"hi\"", "\"say \"\"hi\"\"\"")]
    [InlineData(null, "")]
    public void Ordinary_cells_are_kept_and_quoted_when_needed(string? value, string expected) =>
        Assert.Equal(expected, UsageColumns.CsvText(value));
}
