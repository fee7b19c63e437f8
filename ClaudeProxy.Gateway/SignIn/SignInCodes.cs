using System.Security.Cryptography;
using System.Text;

namespace ClaudeProxy.Gateway.SignIn;

/// <summary>The random values of a sign-in: device codes, user codes, refresh tokens and user ids, and how they are kept.</summary>
public static class SignInCodes
{
    /// <summary>Consonants only, without look-alikes: no vowel can spell a word, nothing reads as a digit.</summary>
    public const string UserCodeAlphabet = "BCDFGHJKMNPQRSTVWXYZ";
    public const int UserCodeLength = 8;
    private const string IdAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

    /// <summary>256 random bits, base64url: a device code or a refresh token.</summary>
    public static string NewSecret() => Base64Url(RandomNumberGenerator.GetBytes(32));

    /// <summary>Eight letters of <see cref="UserCodeAlphabet"/> (20^8, about 2.6e10 codes), stored without the dash.</summary>
    public static string NewUserCode() => RandomNumberGenerator.GetString(UserCodeAlphabet, UserCodeLength);

    /// <summary>A new person's id: <c>usr_</c> and 16 lower-case letters and digits.</summary>
    public static string NewUserId() => "usr_" + RandomNumberGenerator.GetString(IdAlphabet, 16);

    /// <summary>A user code as people see it: <c>BCDF-GHJK</c>.</summary>
    public static string Display(string userCode) => userCode.Length == UserCodeLength ? $"{userCode[..4]}-{userCode[4..]}" : userCode;

    /// <summary>
    /// A user code as typed: case, spaces and dashes do not matter. Null when what is left is not eight letters of
    /// the alphabet.
    /// </summary>
    public static string? NormalizeUserCode(string? typed)
    {
        if (typed is null || typed.Length > 32)
        {
            return null;
        }
        Span<char> code = stackalloc char[UserCodeLength];
        var length = 0;
        foreach (var c in typed)
        {
            if (c is '-' or ' ')
            {
                continue;
            }
            var upper = char.ToUpperInvariant(c);
            if (length == UserCodeLength || !UserCodeAlphabet.Contains(upper))
            {
                return null;
            }
            code[length++] = upper;
        }
        return length == UserCodeLength ? new string(code) : null;
    }

    /// <summary>Hex SHA-256: device codes and refresh tokens are kept only as this.</summary>
    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    public static string Base64Url(ReadOnlySpan<byte> bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
