using System.Globalization;

namespace ClaudeProxy.Admin.Components.Charts;

/// <summary>US dollars as people read them: the digits that matter at each magnitude.</summary>
public static class Money
{
    /// <summary>
    /// $0.0014, $0.42, $12.30, $1,234, $12.3k, $1.2M: under a dollar two significant digits (at least cents), cents up to
    /// $1,000, whole dollars up to $10,000, then thousands, millions and billions with one decimal.
    /// </summary>
    public static string Format(decimal usd)
    {
        if (usd < 0)
        {
            return "-" + Format(-usd);
        }
        if (usd == 0)
        {
            return "$0";
        }
        if (usd < 1)
        {
            // Two significant digits, never fewer than two decimals: 0.0014, 0.015, 0.42.
            var decimals = Math.Min(27, Math.Max(2, 1 - (int)Math.Floor(Math.Log10((double)usd))));
            var rounded = Math.Round(usd, decimals, MidpointRounding.AwayFromZero);
            if (rounded < 1)
            {
                return "$" + rounded.ToString("0.00" + new string('#', decimals - 2), CultureInfo.InvariantCulture);
            }
            usd = rounded;
        }
        if (Math.Round(usd, 2, MidpointRounding.AwayFromZero) < 1_000)
        {
            return "$" + usd.ToString("N2", CultureInfo.InvariantCulture);
        }
        if (Math.Round(usd, 0, MidpointRounding.AwayFromZero) < 10_000)
        {
            return "$" + usd.ToString("N0", CultureInfo.InvariantCulture);
        }
        foreach (var (scale, suffix) in Scales)
        {
            var scaled = Math.Round(usd / scale, 1, MidpointRounding.AwayFromZero);
            if (scaled < 1_000 || suffix == "B")
            {
                return "$" + scaled.ToString("#,0.#", CultureInfo.InvariantCulture) + suffix;
            }
        }
        throw new InvalidOperationException("unreachable");
    }

    private static readonly (decimal Scale, string Suffix)[] Scales = [(1_000m, "k"), (1_000_000m, "M"), (1_000_000_000m, "B")];
}
