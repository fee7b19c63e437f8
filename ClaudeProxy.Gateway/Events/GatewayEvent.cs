using System.Security.Cryptography;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// One event as raised: its id (the <c>webhook-id</c> of its deliveries), type, the time it happened (kept when it is
/// stored later), the instance that raised it, the key that makes it unique across instances (or null), and its data
/// object as JSON.
/// </summary>
public sealed record GatewayEvent(string Id, string Type, DateTimeOffset Time, string Instance, string? DedupKey, string Data)
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    internal static readonly System.Buffers.SearchValues<char> IdCharacters = System.Buffers.SearchValues.Create(Alphabet);

    public static string NewId() => "evt_" + RandomNumberGenerator.GetString(Alphabet, 24);

    public static bool IsId(string? id) => id is { Length: 28 } && id.StartsWith("evt_", StringComparison.Ordinal) && id.AsSpan(4).IndexOfAnyExcept(IdCharacters) < 0;
}
