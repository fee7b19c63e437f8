using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.DataProtection;

namespace ClaudeProxy.Gateway.SignIn;

/// <summary>
/// Data protection every gateway instance shares without a key ring: AES-256-GCM under keys derived (HKDF-SHA256)
/// from <c>JWT_SECRET</c> and the purpose chain. The sign-in's browser leg starts on one instance and may come back
/// to another: the OpenID Connect handler's <c>state</c> and nonce cookie are protected with this, and the provider's
/// refresh tokens are stored encrypted with it. Changing <c>JWT_SECRET</c> ends sign-ins in flight, as it ends tokens.
/// </summary>
public sealed class SecretDataProtection : IDataProtectionProvider, IDataProtector
{
    private const int NonceBytes = 12;
    private const int TagBytes = 16;
    private readonly byte[] _key;

    public SecretDataProtection(byte[] secret, string purpose = "claudeproxy")
    {
        _key = HKDF.DeriveKey(HashAlgorithmName.SHA256, secret, 32, salt: [], info: Encoding.UTF8.GetBytes(purpose));
    }

    public IDataProtector CreateProtector(string purpose) => new SecretDataProtection(_key, purpose);

    public byte[] Protect(byte[] plaintext)
    {
        var output = new byte[NonceBytes + plaintext.Length + TagBytes];
        var nonce = output.AsSpan(0, NonceBytes);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key, TagBytes);
        aes.Encrypt(nonce, plaintext, output.AsSpan(NonceBytes, plaintext.Length), output.AsSpan(NonceBytes + plaintext.Length));
        return output;
    }

    public byte[] Unprotect(byte[] protectedData)
    {
        if (protectedData.Length < NonceBytes + TagBytes)
        {
            throw new CryptographicException("The protected payload is too short.");
        }
        var length = protectedData.Length - NonceBytes - TagBytes;
        var plaintext = new byte[length];
        using var aes = new AesGcm(_key, TagBytes);
        aes.Decrypt(protectedData.AsSpan(0, NonceBytes), protectedData.AsSpan(NonceBytes, length), protectedData.AsSpan(NonceBytes + length), plaintext);
        return plaintext;
    }

    /// <summary>Text in, base64url out.</summary>
    public string ProtectText(string plaintext) => SignInCodes.Base64Url(Protect(Encoding.UTF8.GetBytes(plaintext)));

    /// <summary>The text, or null when the payload was not made by this key (tampered, or another secret).</summary>
    public string? UnprotectText(string protectedText)
    {
        try
        {
            var padded = protectedText.Replace('-', '+').Replace('_', '/');
            padded += new string('=', (4 - padded.Length % 4) % 4);
            return Encoding.UTF8.GetString(Unprotect(Convert.FromBase64String(padded)));
        }
        catch (Exception e) when (e is CryptographicException or FormatException)
        {
            return null;
        }
    }

    /// <summary>HMAC-SHA256 of <paramref name="value"/> under this purpose's key, base64url: the verification page's form token.</summary>
    public string Mac(string value) => SignInCodes.Base64Url(HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(value)));
}
