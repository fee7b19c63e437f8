using System.Security.Cryptography;
using System.Text;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// The management API takes <c>Authorization: Bearer &lt;ADMIN_API_KEY&gt;</c>, the operator key. A valid device token is known but
/// not allowed (403); anything else is not authenticated (401). Compared in constant time.
/// </summary>
public static class OperatorKey
{
    public static async ValueTask<bool> CheckAsync(HttpContext context, GatewayOptions options, TokenService tokens)
    {
        var presented = CredentialReader.Read(context.Request);
        if (options.AdminApiKey is { } key && presented is not null &&
            CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), Encoding.UTF8.GetBytes(key)))
        {
            return true;
        }
        if (presented is not null && (await tokens.ValidateAsync(presented)).Status == TokenStatus.Valid)
        {
            await ApiErrors.WriteAsync(context, 403, "permission_error", "this endpoint needs the operator key, not a device token");
            return false;
        }
        await ApiErrors.WriteAsync(context, 401, "authentication_error",
            options.AdminApiKey is null ? "operator endpoints are disabled: ADMIN_API_KEY is not set" : "missing or wrong operator key");
        return false;
    }
}
