using System.Text;

namespace ClaudeProxy.Settings;

/// <summary>
/// What a secret setting (<c>JWT_SECRET</c>, <c>ADMIN_API_KEY</c>) must be before the gateway starts with it: at least
/// 32 bytes, not a value this repository ships as a placeholder or an example, and not an obvious placeholder
/// (a value made of very few distinct characters). A deployment that forgot to replace one would otherwise let anyone
/// forge tokens or call the management API.
/// </summary>
public static class SecretPolicy
{
    public const int MinBytes = 32;
    private const int MinDistinctCharacters = 8;

    /// <summary>Every secret value shipped in this repository's manifests, examples and documentation.</summary>
    public static readonly IReadOnlySet<string> Shipped = new HashSet<string>(StringComparer.Ordinal)
    {
        "REPLACE_WITH_AT_LEAST_32_RANDOM_BYTES",
        "REPLACE_WITH_A_RANDOM_OPERATOR_KEY",
        "596ea40f310fcf30472bfd8b251f42fc",
    };

    private static readonly string[] PlaceholderMarkers = ["REPLACE_WITH", "CHANGE_ME", "CHANGEME", "YOUR_SECRET", "YOUR-SECRET", "PLACEHOLDER"];

    /// <summary>Null when <paramref name="value"/> may be used for <paramref name="name"/>; otherwise the reason, never echoing the value.</summary>
    public static string? Check(string name, string value)
    {
        const string Generate = "generate one with: openssl rand -hex 32";
        if (Encoding.UTF8.GetByteCount(value) < MinBytes)
        {
            return $"{name} must be at least {MinBytes} bytes long; {Generate}.";
        }
        if (Shipped.Contains(value) || PlaceholderMarkers.Any(m => value.Contains(m, StringComparison.OrdinalIgnoreCase)))
        {
            return $"{name} is a placeholder or an example value shipped with ClaudeProxy, which anyone can read; {Generate}.";
        }
        if (value.Distinct().Count() < MinDistinctCharacters)
        {
            return $"{name} has fewer than {MinDistinctCharacters} distinct characters and looks like a placeholder; {Generate}.";
        }
        return null;
    }
}
