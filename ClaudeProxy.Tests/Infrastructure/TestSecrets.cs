using System.Security.Cryptography;

namespace ClaudeProxy.Tests.Infrastructure;

public static class TestSecrets
{
    /// <summary>The management API's operator key (ADMIN_API_KEY) in tests.</summary>
    public const string OperatorKey = "operator-key-0123456789-abcdefghij";

    public static string MasterKey() => "sk-ant-master-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(16));

    public static string JwtSecret() => "jwt-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(24));

    public static string DeviceId(string prefix = "dev") => $"{prefix}-{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 13, 128)];
}
