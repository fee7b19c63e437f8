using System.Globalization;

namespace ClaudeProxy.Admin.Components.Charts;

/// <summary>One column of the table beside a chart; numeric columns align right.</summary>
public sealed record ChartColumn(string Header, bool Numeric = false);

/// <summary>
/// One cell: <see cref="Text"/> as the table shows it, <see cref="Value"/> as the CSV carries it (the number unformatted,
/// so a spreadsheet can add it up), and an optional link.
/// </summary>
public sealed record ChartCell(string Text, string Value, string? Href = null)
{
    public static ChartCell Of(string? text, string? href = null) => new(text ?? "", text ?? "", href);

    public static ChartCell Usd(decimal usd) => new(Money.Format(usd), Plain(usd));

    /// <summary>A decimal without the trailing zeros of its stored scale (0.0014, not 0.0014000000).</summary>
    public static string Plain(decimal value) => value.ToString("0.############################", CultureInfo.InvariantCulture);

    public static ChartCell Count(long count) => new(count.ToString("N0", CultureInfo.InvariantCulture), count.ToString(CultureInfo.InvariantCulture));

    /// <summary>A ratio in 0..1, shown as a percentage.</summary>
    public static ChartCell Ratio(double ratio) => new(Quantity.Percent(Math.Round((decimal)ratio, 4)), ratio.ToString("0.####", CultureInfo.InvariantCulture));

    public static ChartCell Milliseconds(double? ms) => ms is { } v
        ? new(v.ToString("N0", CultureInfo.InvariantCulture) + " ms", v.ToString("0.#", CultureInfo.InvariantCulture))
        : new("—", "");

    public static ChartCell Time(DateTimeOffset at, string format) => new(at.UtcDateTime.ToString(format, CultureInfo.InvariantCulture),
        at.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
}

/// <summary>The table a chart is drawn from: what the page shows under the chart and what its CSV download holds.</summary>
public sealed record ChartTable(IReadOnlyList<ChartColumn> Columns, IReadOnlyList<IReadOnlyList<ChartCell>> Rows)
{
    public static readonly ChartTable Empty = new([], []);
}

/// <summary>One series of bars: a value per label, drawn dashed and pale when it is a projection rather than a measure.</summary>
public sealed record BarSeries(string Name, IReadOnlyList<decimal> Values, bool Projected = false);
