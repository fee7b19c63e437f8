using System.Security.Cryptography;
using System.Text;

namespace ClaudeProxy.Admin.Auth;

/// <summary>
/// The admin password, kept as a PBKDF2-SHA256 hash: <c>pbkdf2-sha256$iterations$salt$hash</c> (base64). A plain
/// <c>ADMIN_PASSWORD</c> is hashed at start and never kept. Comparison is constant-time.
/// </summary>
public sealed class AdminPassword
{
    private const int DefaultIterations = 210_000;
    private readonly int _iterations;
    private readonly byte[] _salt;
    private readonly byte[] _hash;

    private AdminPassword(int iterations, byte[] salt, byte[] hash)
    {
        _iterations = iterations;
        _salt = salt;
        _hash = hash;
    }

    public static string Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, DefaultIterations, HashAlgorithmName.SHA256, 32);
        return $"pbkdf2-sha256${DefaultIterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    public static AdminPassword FromHash(string encoded)
    {
        var parts = encoded.Split('$');
        if (parts.Length != 4 || parts[0] != "pbkdf2-sha256" || !int.TryParse(parts[1], out var iterations) || iterations < 10_000)
        {
            throw new AdminConfigurationException("ADMIN_PASSWORD_HASH must look like pbkdf2-sha256$iterations$salt$hash (make one with: dotnet ClaudeProxy.Admin.dll hash-password PASSWORD).");
        }
        try
        {
            return new AdminPassword(iterations, Convert.FromBase64String(parts[2]), Convert.FromBase64String(parts[3]));
        }
        catch (FormatException)
        {
            throw new AdminConfigurationException("ADMIN_PASSWORD_HASH has a salt or hash that is not base64.");
        }
    }

    public static AdminPassword FromPlain(string password) => FromHash(Hash(password));

    public bool Verify(string? password)
    {
        var candidate = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password ?? ""), _salt, _iterations, HashAlgorithmName.SHA256, _hash.Length);
        return CryptographicOperations.FixedTimeEquals(candidate, _hash);
    }
}
