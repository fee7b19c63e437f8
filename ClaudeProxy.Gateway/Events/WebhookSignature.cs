using System.Security.Cryptography;
using System.Text;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// Signing as the Standard Webhooks specification has it (standardwebhooks.com), so its libraries verify our deliveries:
/// a secret is <c>whsec_</c> and the base64 of its key; the signature is <c>v1,</c> and the base64 of
/// HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}").
/// </summary>
public static class WebhookSignature
{
    public const string Prefix = "whsec_";

    public static string NewSecret() => Prefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    /// <summary>True for <c>whsec_</c> and the base64 of 24 to 64 bytes.</summary>
    public static bool IsSecret(string? secret)
    {
        if (secret is null || !secret.StartsWith(Prefix, StringComparison.Ordinal) || secret.Length > 200)
        {
            return false;
        }
        Span<byte> key = stackalloc byte[160];
        return Convert.TryFromBase64String(secret[Prefix.Length..], key, out var length) && length is >= 24 and <= 64;
    }

    /// <summary>The secret as shown after its creation: the prefix and its last four characters.</summary>
    public static string Mask(string secret) => Prefix + "…" + secret[^Math.Min(4, secret.Length - Prefix.Length)..];

    public static string Sign(string secret, string id, long timestamp, string body)
    {
        var key = Convert.FromBase64String(secret[Prefix.Length..]);
        var signed = Encoding.UTF8.GetBytes($"{id}.{timestamp}.{body}");
        return "v1," + Convert.ToBase64String(HMACSHA256.HashData(key, signed));
    }
}
