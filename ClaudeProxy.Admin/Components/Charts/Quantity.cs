using System.Globalization;

namespace ClaudeProxy.Admin.Components.Charts;

/// <summary>Counts, ratios and durations as axis labels.</summary>
public static class Quantity
{
    /// <summary>1,234 up to 10,000, then 12.3k, 4.5M, 6.7B.</summary>
    public static string Count(decimal count)
    {
        var magnitude = Math.Abs(count);
        if (magnitude < 10_000)
        {
            return count.ToString("#,0.##", CultureInfo.InvariantCulture);
        }
        var (scale, suffix) = magnitude < 999_950 ? (1_000m, "k") : magnitude < 999_950_000 ? (1_000_000m, "M") : (1_000_000_000m, "B");
        return (count / scale).ToString("#,0.#", CultureInfo.InvariantCulture) + suffix;
    }

    /// <summary>A ratio in 0..1 as a percentage with the decimals it needs: 0.5%, 12%, 12.5%.</summary>
    public static string Percent(decimal ratio) => (ratio * 100).ToString("0.##", CultureInfo.InvariantCulture) + "%";

    public static string Milliseconds(decimal ms) => ms.ToString("#,0.##", CultureInfo.InvariantCulture) + " ms";
}
