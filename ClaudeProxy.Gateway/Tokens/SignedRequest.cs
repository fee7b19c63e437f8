using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// A request signed with a device's key. The signature covers, one per line (no newline at the end):
/// <c>claudeproxy-device-v1</c>, the method, the endpoint (<c>/bootstrap</c> or <c>/refresh</c>), the timestamp
/// (Unix seconds), the nonce, and the SHA-256 of the exact body bytes in lowercase hex. The three parts travel in
/// <c>x-device-timestamp</c>, <c>x-device-nonce</c> and <c>x-device-signature</c> (base64).
/// </summary>
public sealed record SignedRequest(long Timestamp, string Nonce, byte[] Signature)
{
    public const string TimestampHeader = "x-device-timestamp";
    public const string NonceHeader = "x-device-nonce";
    public const string SignatureHeader = "x-device-signature";
    public const string Version = "claudeproxy-device-v1";

    /// <summary>How far a request's timestamp may be from the gateway's clock, either way.</summary>
    public static readonly TimeSpan MaxSkew = TimeSpan.FromSeconds(60);

    /// <summary>How long a nonce is remembered: longer than any timestamp still accepted.</summary>
    public static readonly TimeSpan NonceLifetime = MaxSkew * 2 + TimeSpan.FromSeconds(5);

    /// <summary>
    /// Reads the signature headers. Null with no error when none is present; an error (for a 400) when they are
    /// partial or malformed.
    /// </summary>
    public static SignedRequest? Read(HttpRequest request, out string? error)
    {
        error = null;
        var timestamp = request.Headers[TimestampHeader].ToString();
        var nonce = request.Headers[NonceHeader].ToString();
        var signature = request.Headers[SignatureHeader].ToString();
        if (timestamp.Length == 0 && nonce.Length == 0 && signature.Length == 0)
        {
            return null;
        }
        if (timestamp.Length == 0 || nonce.Length == 0 || signature.Length == 0)
        {
            error = $"a signed request needs all three headers: {TimestampHeader}, {NonceHeader} and {SignatureHeader}";
            return null;
        }
        if (timestamp.Length > 12 || !long.TryParse(timestamp, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
        {
            error = $"{TimestampHeader} must be the time in whole seconds since 1970-01-01 UTC";
            return null;
        }
        if (nonce.Length is < 16 or > 128 || !nonce.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            error = $"{NonceHeader} must be 16 to 128 characters of A-Z, a-z, 0-9, '-' or '_', new for every request";
            return null;
        }
        var bytes = new byte[96];
        if (signature.Length > 128 || !Convert.TryFromBase64String(signature, bytes, out var length) || length < 8)
        {
            error = $"{SignatureHeader} must be a base64 ECDSA signature (DER, as openssl dgst -sha256 -sign writes it)";
            return null;
        }
        return new SignedRequest(seconds, nonce, bytes[..length]);
    }

    /// <summary>The bytes the device signed.</summary>
    public byte[] Message(string method, string endpoint, ReadOnlySpan<byte> body) =>
        Encoding.ASCII.GetBytes(string.Join('\n', Version, method, endpoint, Timestamp.ToString(CultureInfo.InvariantCulture), Nonce,
            Convert.ToHexStringLower(SHA256.HashData(body))));

    /// <summary>Whether the timestamp is within <see cref="MaxSkew"/> of <paramref name="now"/>.</summary>
    public bool IsFresh(DateTimeOffset now) => Math.Abs(now.ToUnixTimeSeconds() - Timestamp) <= (long)MaxSkew.TotalSeconds;
}
