using System.Globalization;
using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace ClaudeProxy.Settings;

/// <summary>
/// Reads the settings of <see cref="SettingsCatalogue"/> from configuration, each by its kind, and refuses a bad value
/// with a message that names the setting (never its value). <paramref name="refuse"/> makes the exception each process
/// stops on.
/// </summary>
public sealed class SettingsReader(IConfiguration configuration, Func<string, Exception> refuse)
{
    /// <summary>The value as configured, unread: null when not set.</summary>
    public string? Raw(Setting setting) => configuration[setting.Key];

    /// <summary>Whether the variable holds anything (whitespace counts).</summary>
    public bool IsSet(Setting setting) => Raw(setting) is { Length: > 0 };

    /// <summary>The value, else the default; a required setting without either is refused.</summary>
    public string? Text(Setting setting) =>
        Raw(setting) is { Length: > 0 } value ? value
        : setting.Required ? throw refuse($"{setting.Name} is required but not set.")
        : setting.Default;

    /// <summary>A secret: refused when <see cref="SecretPolicy"/> refuses it; null when optional and not set.</summary>
    public string? Secret(Setting setting)
    {
        var value = Text(setting);
        if (value is not null && SecretPolicy.Check(setting.Name, value) is { } problem)
        {
            throw refuse(problem);
        }
        return value;
    }

    /// <summary>A number within the setting's range; blank reads the default (0 for a setting without one).</summary>
    public double Number(Setting setting)
    {
        var raw = Raw(setting);
        if (string.IsNullOrWhiteSpace(raw))
        {
            return double.Parse(setting.Default ?? "0", CultureInfo.InvariantCulture);
        }
        if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < setting.Min || value > setting.Max)
        {
            throw refuse($"{setting.Name} must be a number from {setting.Min.ToString(CultureInfo.InvariantCulture)} to {setting.Max.ToString(CultureInfo.InvariantCulture)}.");
        }
        return value;
    }

    /// <summary>A number when the variable is set, else null.</summary>
    public double? OptionalNumber(Setting setting) => IsSet(setting) ? Number(setting) : null;

    /// <summary>Bytes, or a number with kb/mb/gb (1024-based): "2mb", "512kb", "2097152"; at most 1gb.</summary>
    public long Size(Setting setting)
    {
        var raw = Raw(setting)?.Trim().ToLowerInvariant();
        if (string.IsNullOrEmpty(raw))
        {
            raw = setting.Default ?? "0";
        }
        long multiplier = 1;
        foreach (var (suffix, factor) in new[] { ("kb", 1024L), ("mb", 1024L * 1024), ("gb", 1024L * 1024 * 1024), ("k", 1024L), ("m", 1024L * 1024), ("b", 1L) })
        {
            if (raw.EndsWith(suffix, StringComparison.Ordinal))
            {
                multiplier = factor;
                raw = raw[..^suffix.Length].Trim();
                break;
            }
        }
        if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value <= 0 || value * multiplier > 1024L * 1024 * 1024)
        {
            throw refuse($"{setting.Name} must be a size such as 2mb, 512kb or a number of bytes (at most 1gb).");
        }
        return (long)(value * multiplier);
    }

    /// <summary><c>true</c> or <c>false</c> (any case); blank reads the default.</summary>
    public bool Boolean(Setting setting) => (Raw(setting)?.Trim().ToLowerInvariant() is { Length: > 0 } raw ? raw : setting.Default) switch
    {
        null or "false" => false,
        "true" => true,
        _ => throw refuse($"{setting.Name} must be true or false."),
    };

    /// <summary>One of the setting's choices (any case), as the enum member of the same name; blank reads the default.</summary>
    public TEnum Choice<TEnum>(Setting setting) where TEnum : struct, Enum
    {
        var raw = Raw(setting)?.Trim().ToLowerInvariant() is { Length: > 0 } value ? value : setting.Default;
        if (raw is null || !setting.Choices.Contains(raw))
        {
            throw refuse($"{setting.Name} must be {string.Join(", ", setting.Choices.Take(setting.Choices.Count - 1))} or {setting.Choices[^1]}.");
        }
        return Enum.Parse<TEnum>(raw, ignoreCase: true);
    }

    /// <summary>A comma list; the default when the variable is empty; no items when neither holds any.</summary>
    public IReadOnlyList<string> List(Setting setting) =>
        (Raw(setting) is { Length: > 0 } value ? value : setting.Default) is { } raw && !string.IsNullOrWhiteSpace(raw)
            ? raw.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : [];

    /// <summary>A comma list of CIDR networks or single addresses (see <see cref="NetworkList"/>); none when not set.</summary>
    public IReadOnlyList<IPNetwork> Networks(Setting setting) =>
        NetworkList.Parse(Raw(setting)) ?? throw refuse(NetworkList.Malformed(setting.Name));
}
