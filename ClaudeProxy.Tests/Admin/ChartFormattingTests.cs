using ClaudeProxy.Admin.Components.Charts;

namespace ClaudeProxy.Tests.Admin;

/// <summary>What the charts and tables write for a dollar amount, where their axes stop, and what their CSV holds.</summary>
public sealed class ChartFormattingTests
{
    [Theory]
    [InlineData("0", "$0")]
    [InlineData("0.0014", "$0.0014")]
    [InlineData("0.001425", "$0.0014")]
    [InlineData("0.00015", "$0.00015")]
    [InlineData("0.0000001", "$0.0000001")]
    [InlineData("0.001", "$0.001")]
    [InlineData("0.015", "$0.015")]
    [InlineData("0.42", "$0.42")]
    [InlineData("0.4237", "$0.42")]
    [InlineData("0.994", "$0.99")]
    [InlineData("0.9999", "$1.00")]
    [InlineData("12.3", "$12.30")]
    [InlineData("999.994", "$999.99")]
    [InlineData("999.999", "$1,000")]
    [InlineData("1234.4", "$1,234")]
    [InlineData("9999.4", "$9,999")]
    [InlineData("9999.6", "$10k")]
    [InlineData("12345", "$12.3k")]
    [InlineData("999949", "$999.9k")]
    [InlineData("999960", "$1M")]
    [InlineData("1234567", "$1.2M")]
    [InlineData("2500000000", "$2.5B")]
    [InlineData("3000000000000", "$3,000B")]
    [InlineData("-0.42", "-$0.42")]
    [InlineData("-12345", "-$12.3k")]
    public void Money_reads_at_every_magnitude(string usd, string expected) =>
        Assert.Equal(expected, Money.Format(decimal.Parse(usd, System.Globalization.CultureInfo.InvariantCulture)));

    [Theory]
    [InlineData("0.0014", "0.0015", "0.0005")]
    [InlineData("14000", "15000", "5000")]
    [InlineData("0.42", "0.5", "0.1")]
    [InlineData("1", "1", "0.2")]
    [InlineData("12.3", "15", "5")]
    [InlineData("1234", "1500", "500")]
    [InlineData("1.01", "1.2", "0.2")]
    [InlineData("1000000", "1000000", "200000")]
    [InlineData("0.0000003", "0.0000003", "0.00000005")]
    [InlineData("79228162514264337593543950335", "1000000000000000000000000000", "200000000000000000000000000")]
    public void The_axis_runs_from_zero_to_just_above_the_largest_value_in_round_steps(string max, string axisMax, string step)
    {
        var scale = NiceScale.For(decimal.Parse(max, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(decimal.Parse(axisMax, System.Globalization.CultureInfo.InvariantCulture), scale.Max);
        Assert.Equal(decimal.Parse(step, System.Globalization.CultureInfo.InvariantCulture), scale.Step);
    }

    [Fact]
    public void Any_positive_value_fills_more_than_half_the_axis_with_at_most_ten_ticks()
    {
        var random = new Random(7);
        for (var i = 0; i < 10_000; i++)
        {
            var max = (decimal)Math.Pow(10, random.NextDouble() * 16 - 8);
            var scale = NiceScale.For(max);
            Assert.True(scale.Max >= max, $"{max}: axis ends at {scale.Max}");
            Assert.True(max / scale.Max > 0.5m, $"{max}: axis ends at {scale.Max}");
            Assert.InRange(scale.Ticks.Count, 3, 11);
            // Each tick reads as a different label.
            Assert.Equal(scale.Ticks.Count, scale.Ticks.Select(Money.Format).Distinct().Count());
        }
    }

    [Fact]
    public void The_ticks_of_a_fraction_of_a_cent_read_in_fractions_of_a_cent()
    {
        Assert.Equal(["$0", "$0.0005", "$0.001", "$0.0015"], NiceScale.For(0.0014m).Ticks.Select(Money.Format));
        Assert.Equal(["$0", "$5,000", "$10k", "$15k"], NiceScale.For(14_000m).Ticks.Select(Money.Format));
    }

    [Fact]
    public void Counts_step_in_whole_numbers_and_an_empty_axis_still_has_a_scale()
    {
        Assert.Equal([0m, 1m], NiceScale.For(1, wholeSteps: true).Ticks);
        Assert.Equal([0m, 1m, 2m, 3m], NiceScale.For(3, wholeSteps: true).Ticks);
        Assert.Equal(1m, NiceScale.For(0).Max);
        Assert.Equal(1m, NiceScale.For(-5).Max);
        Assert.Equal(6, NiceScale.For(0).Ticks.Count);
    }

    [Fact]
    public void A_csv_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text()
    {
        var table = new ChartTable([new("Key"), new("Cost (USD)", true)],
        [
            [ChartCell.Of("=HYPERLINK(\"http://evil\",\"x\")"), ChartCell.Usd(0.0014m)],
            [ChartCell.Of("+1"), ChartCell.Usd(-0.25m)],
            [ChartCell.Of("-2+3"), ChartCell.Count(12345)],
            [ChartCell.Of("@SUM(A1)"), ChartCell.Of("\tx")],
            [ChartCell.Of("a,b"), ChartCell.Of("line\nbreak")],
            [ChartCell.Of("claude-haiku-4-5"), ChartCell.Of("")],
        ]);
        Assert.Equal(
            "Key,Cost (USD)\r\n" +
            "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",0.0014\r\n" +
            "'+1,-0.25\r\n" +
            "'-2+3,12345\r\n" +
            "'@SUM(A1),'\tx\r\n" +
            "\"a,b\",\"line\nbreak\"\r\n" +
            "claude-haiku-4-5,\r\n",
            Csv.Write(table));
    }

    [Fact]
    public void The_csv_link_decodes_to_the_csv()
    {
        var table = new ChartTable([new("Model")], [[ChartCell.Of("claude é #1 %20")]]);
        var uri = Csv.DataUri(table);
        Assert.StartsWith("data:text/csv;charset=utf-8,", uri);
        Assert.Equal(Csv.Write(table), Uri.UnescapeDataString(uri["data:text/csv;charset=utf-8,".Length..]));
    }

    [Fact]
    public void Buckets_cover_the_range_with_gaps_and_keep_the_latest_of_a_range_too_long_to_draw()
    {
        var days = Buckets.Continuous([new DateTimeOffset(2026, 11, 3, 15, 0, 0, TimeSpan.Zero)], "day",
            new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2026, 11, 5, 0, 0, 0, TimeSpan.Zero));
        Assert.Equal([1, 2, 3, 4, 5], days.Select(d => d.Day));
        var weeks = Buckets.Continuous([new DateTimeOffset(2026, 11, 26, 9, 0, 0, TimeSpan.Zero), new DateTimeOffset(2026, 11, 10, 9, 0, 0, TimeSpan.Zero)], "week");
        Assert.Equal([9, 16, 23], weeks.Select(d => d.Day));
        Assert.All(weeks, w => Assert.Equal(DayOfWeek.Monday, w.DayOfWeek));
        var months = Buckets.Continuous([new DateTimeOffset(2026, 1, 31, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero)], "month");
        Assert.Equal([1, 2, 3], months.Select(d => d.Month));
        var all = Buckets.Continuous([], "day", new DateTimeOffset(1, 1, 1, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2026, 11, 26, 0, 0, 0, TimeSpan.Zero));
        Assert.Equal(Buckets.Most, all.Count);
        Assert.Equal(new DateTimeOffset(2026, 11, 26, 0, 0, 0, TimeSpan.Zero), all[^1]);
    }
}
