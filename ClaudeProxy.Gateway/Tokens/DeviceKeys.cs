using System.Security.Cryptography;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>Whether a device may get tokens without an enrolled key (<c>DEVICE_KEYS</c>).</summary>
public enum DeviceKeyMode
{
    /// <summary>A device without a key bootstraps by its id alone; one that enrolled a key must always sign.</summary>
    Optional,

    /// <summary>Every bootstrap and refresh is signed by an enrolled key.</summary>
    Required,
}

/// <summary>A device's public key: SubjectPublicKeyInfo (DER) in canonical base64, and its algorithm name.</summary>
public sealed record DeviceKey(string PublicKey, string Algorithm)
{
    /// <summary>Short, stable name of the key for operators and audit entries (first 16 hex digits of its SHA-256).</summary>
    public string Fingerprint => Convert.ToHexStringLower(SHA256.HashData(Convert.FromBase64String(PublicKey)))[..16];
}

/// <summary>
/// The key algorithms a device can enrol, and signature checks. ECDSA P-256 with SHA-256 only: the .NET runtime
/// offers no Ed25519 of its own, and one algorithm that the runtime and openssl both have needs no native library.
/// </summary>
public static class DeviceKeys
{
    public const string P256 = "p256";

    /// <summary>A P-256 SubjectPublicKeyInfo is 91 bytes (124 base64 characters); anything far larger is not a key.</summary>
    private const int MaxPublicKeyChars = 512;

    /// <summary>Parses an offered key; the message says what is wrong when it is not a usable P-256 public key.</summary>
    public static bool TryParse(string publicKey, string? algorithm, out DeviceKey? key, out string? error)
    {
        key = null;
        error = null;
        if (algorithm is not null && !string.Equals(algorithm, P256, StringComparison.Ordinal))
        {
            error = "key_algorithm must be \"p256\" (ECDSA P-256 with SHA-256)";
            return false;
        }
        var spki = new byte[MaxPublicKeyChars];
        if (publicKey.Length > MaxPublicKeyChars || !Convert.TryFromBase64String(publicKey, spki, out var length))
        {
            error = "public_key must be a P-256 public key: base64 of its SubjectPublicKeyInfo (DER), as openssl pkey -pubout -outform DER writes it";
            return false;
        }
        try
        {
            using var ecdsa = ECDsa.Create();
            ecdsa.ImportSubjectPublicKeyInfo(spki.AsSpan(0, length), out var read);
            var parameters = ecdsa.ExportParameters(false);
            if (read != length || parameters.Curve.Oid.Value != ECCurve.NamedCurves.nistP256.Oid.Value)
            {
                error = "public_key must be an ECDSA key on the P-256 curve (prime256v1), and nothing else";
                return false;
            }
            key = new DeviceKey(Convert.ToBase64String(ecdsa.ExportSubjectPublicKeyInfo()), P256);
            return true;
        }
        catch (CryptographicException)
        {
            error = "public_key must be a P-256 public key: base64 of its SubjectPublicKeyInfo (DER), as openssl pkey -pubout -outform DER writes it";
            return false;
        }
    }

    /// <summary>
    /// Checks an ECDSA signature over <paramref name="message"/>, in DER (as openssl writes it) or as the 64 bytes of r and s.
    /// </summary>
    public static bool Verify(DeviceKey key, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
    {
        try
        {
            using var ecdsa = ECDsa.Create();
            ecdsa.ImportSubjectPublicKeyInfo(Convert.FromBase64String(key.PublicKey), out _);
            var format = signature.Length == 64 ? DSASignatureFormat.IeeeP1363FixedFieldConcatenation : DSASignatureFormat.Rfc3279DerSequence;
            return ecdsa.VerifyData(message, signature, HashAlgorithmName.SHA256, format);
        }
        catch (CryptographicException)
        {
            return false;
        }
    }
}
