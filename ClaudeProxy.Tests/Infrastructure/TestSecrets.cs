using System.Security.Cryptography;

namespace ClaudeProxy.Tests.Infrastructure;

public static class TestSecrets
{
    public static string MasterKey() => "sk-ant-master-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(16));

    public static string JwtSecret() => "jwt-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(24));

    public static string DeviceId(string prefix = "dev") => $"{prefix}-{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 13, 128)];
}
