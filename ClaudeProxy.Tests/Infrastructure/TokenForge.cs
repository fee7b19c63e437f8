using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>Makes tokens the way an attacker or a stale client would, to check the gateway refuses them.</summary>
public static class TokenForge
{
    public static string Make(string secret, string deviceId = "forged-device", string issuer = "claudeproxy", string audience = "claudeproxy-gateway",
        DateTime? notBefore = null, DateTime? expires = null, string algorithm = SecurityAlgorithms.HmacSha256, IDictionary<string, object>? claims = null)
    {
        var now = DateTime.UtcNow;
        var all = new Dictionary<string, object>
        {
            ["device_id"] = deviceId, ["user_id"] = deviceId, ["org_id"] = "default", ["models"] = new[] { "claude-*" },
            ["rate_limit"] = 100, ["policy_version"] = 1, ["jti"] = Guid.NewGuid().ToString("N"),
        };
        foreach (var (k, v) in claims ?? new Dictionary<string, object>())
        {
            all[k] = v;
        }
        var nbf = notBefore ?? now.AddMinutes(-1);
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = nbf,
            NotBefore = nbf,
            Expires = expires ?? now.AddHours(1),
            Claims = all,
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(secret)), algorithm),
        });
    }

    /// <summary>A token with the right secret and claims but signed HS512: the gateway must insist on HS256.</summary>
    public static string Hs512(string secret, string deviceId = "forged-device")
    {
        var exp = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        var now = DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds();
        var unsigned = Base64UrlEncoder.Encode("{\"alg\":\"HS512\",\"typ\":\"JWT\"}") + "." +
            Base64UrlEncoder.Encode($"{{\"device_id\":\"{deviceId}\",\"jti\":\"x\",\"iss\":\"claudeproxy\",\"aud\":\"claudeproxy-gateway\",\"iat\":{now},\"nbf\":{now},\"exp\":{exp},\"models\":[\"claude-*\"]}}");
        var signature = System.Security.Cryptography.HMACSHA512.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(unsigned));
        return unsigned + "." + Base64UrlEncoder.Encode(signature);
    }

    public static string AlgNone(string deviceId = "forged-device")
    {
        static string B64(string s) => Base64UrlEncoder.Encode(s);
        var exp = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        return B64("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." +
               B64($"{{\"device_id\":\"{deviceId}\",\"jti\":\"x\",\"iss\":\"claudeproxy\",\"aud\":\"claudeproxy-gateway\",\"exp\":{exp},\"models\":[\"claude-*\"]}}") + ".";
    }
}
