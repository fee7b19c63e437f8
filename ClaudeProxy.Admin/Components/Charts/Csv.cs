using System.Text;
using System.Text.RegularExpressions;

namespace ClaudeProxy.Admin.Components.Charts;

/// <summary>RFC 4180 CSV of a chart's table, safe to open in a spreadsheet.</summary>
public static partial class Csv
{
    public static string Write(ChartTable table)
    {
        var csv = new StringBuilder();
        csv.AppendJoin(',', table.Columns.Select(c => Cell(c.Header))).Append("\r\n");
        foreach (var row in table.Rows)
        {
            csv.AppendJoin(',', row.Select(c => Cell(c.Value))).Append("\r\n");
        }
        return csv.ToString();
    }

    /// <summary>
    /// A text a spreadsheet would run as a formula (= + - @, or a tab or carriage return first) gets a leading '; a plain
    /// number stays a number, negative ones included. Then quoted when it holds a comma, a quote or a line break.
    /// </summary>
    public static string Cell(string value)
    {
        if (value.Length > 0 && "=+-@\t\r".Contains(value[0]) && !PlainNumber().IsMatch(value))
        {
            value = "'" + value;
        }
        return value.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : value;
    }

    /// <summary>The CSV as a link target the browser downloads without another round trip to the server.</summary>
    public static string DataUri(ChartTable table) => "data:text/csv;charset=utf-8," + Uri.EscapeDataString(Write(table));

    [GeneratedRegex(@"^-?[0-9]+(\.[0-9]+)?$")]
    private static partial Regex PlainNumber();
}
