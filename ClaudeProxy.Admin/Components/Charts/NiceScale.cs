namespace ClaudeProxy.Admin.Components.Charts;

/// <summary>
/// A value axis from 0 to just above the largest value, in steps of 1, 2 or 5 times a power of ten, so $0.0014 and
/// $14,000 both fill the chart and every tick reads as a round number.
/// </summary>
public sealed record NiceScale(decimal Max, decimal Step)
{
    /// <summary>The ticks from 0 to <see cref="Max"/> inclusive.</summary>
    public IReadOnlyList<decimal> Ticks
    {
        get
        {
            var ticks = new List<decimal>();
            for (var i = 0; i * Step <= Max; i++)
            {
                ticks.Add(i * Step);
            }
            return ticks;
        }
    }

    /// <summary>The scale for values up to <paramref name="max"/> in at most <paramref name="ticks"/> + 1 steps; whole steps only when <paramref name="wholeSteps"/>.</summary>
    public static NiceScale For(decimal max, int ticks = 5, bool wholeSteps = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ticks, 1);
        if (max <= 0)
        {
            return wholeSteps ? new NiceScale(ticks, 1) : new NiceScale(1, 1m / ticks);
        }
        // Far beyond any spend; keeps the rounding below within decimal's range.
        max = Math.Min(max, Largest);
        // The smallest step of 1, 2 or 5 times a power of ten that reaches the largest value in at most ticks + 1 steps.
        var most = ticks + 1;
        var magnitude = PowerOfTen((int)Math.Floor(Math.Log10((double)(max / most))) - 1);
        var step = magnitude;
        for (var i = 0; Math.Ceiling(max / step) > most; i++)
        {
            step = (i % 3) switch { 0 => 2, 1 => 5, _ => 10 } * magnitude;
            if (i % 3 == 2)
            {
                magnitude *= 10;
            }
        }
        if (wholeSteps && step < 1)
        {
            step = 1;
        }
        return new NiceScale(Math.Ceiling(max / step) * step, step);
    }

    private const decimal Largest = 1e27m;

    private static decimal PowerOfTen(int exponent)
    {
        exponent = Math.Clamp(exponent, -27, 27);
        var value = 1m;
        for (var i = 0; i < Math.Abs(exponent); i++)
        {
            value = exponent > 0 ? value * 10 : value / 10;
        }
        return value;
    }
}
