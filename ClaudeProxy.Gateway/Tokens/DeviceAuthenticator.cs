using ClaudeProxy.Gateway.Errors;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// Who is calling: the wrapper token checked (signature, algorithm, issuer, audience, lifetime), then the device's
/// current standing (revoked, or a policy newer than the token's). Writes the 401 itself when the answer is no.
/// The proxy routes check only the token here: their standing is checked by admission, in the same Redis round
/// trip as the limits.
/// </summary>
public sealed class DeviceAuthenticator(TokenService tokens, IDeviceStanding standing)
{
    /// <summary>The token and the device's standing, for routes that do not go through admission.</summary>
    public async ValueTask<DeviceIdentity?> AuthenticateAsync(HttpContext context)
    {
        var identity = await AuthenticateTokenAsync(context);
        if (identity is null)
        {
            return null;
        }
        var verdict = await standing.CheckAsync(identity, context.RequestAborted);
        if (verdict is not null)
        {
            if (identity.IsPerson)
            {
                await WritePersonRefusalAsync(context, Limits.Refusals.PersonStandingMessage);
            }
            else
            {
                await ApiErrors.WriteAsync(context, 401, "authentication_error", verdict);
            }
            return null;
        }
        return identity;
    }

    /// <summary>The token alone; the caller must have admission check the device's standing.</summary>
    public async ValueTask<DeviceIdentity?> AuthenticateTokenAsync(HttpContext context)
    {
        // A token seen before is found without copying it out of its header; a new one is validated.
        if (!tokens.TryCached(CredentialReader.ReadSpan(context.Request), out var check))
        {
            check = await tokens.ValidateAsync(CredentialReader.Read(context.Request));
        }
        if (check.Status == TokenStatus.Expired && check.Identity!.IsPerson)
        {
            await WritePersonRefusalAsync(context, "your gateway sign-in has expired: run /login to sign in again");
            return null;
        }
        if (check.Status != TokenStatus.Valid)
        {
            await ApiErrors.WriteAsync(context, 401, "authentication_error", check.Status switch
            {
                TokenStatus.Missing => "missing wrapper token: send it as Authorization: Bearer or x-api-key",
                TokenStatus.Expired => "wrapper token has expired: refresh it with POST /refresh or bootstrap again",
                _ => "invalid wrapper token",
            });
            return null;
        }
        return check.Identity!;
    }

    /// <summary>
    /// A 401 that ends a signed-in person's session: <c>x-should-retry: false</c> makes Claude Code ask them to sign in
    /// again at once instead of retrying for minutes.
    /// </summary>
    public static Task WritePersonRefusalAsync(HttpContext context, string message)
    {
        context.Response.Headers["x-should-retry"] = "false";
        return ApiErrors.WriteAsync(context, 401, "authentication_error", message);
    }
}

/// <summary>A device's standing as the gateway knows it now; null means the token may be used.</summary>
public interface IDeviceStanding
{
    ValueTask<string?> CheckAsync(DeviceIdentity identity, CancellationToken cancellationToken);
}

/// <summary>Without device records every valid token stands.</summary>
public sealed class AlwaysInGoodStanding : IDeviceStanding
{
    public ValueTask<string?> CheckAsync(DeviceIdentity identity, CancellationToken cancellationToken) => ValueTask.FromResult<string?>(null);
}
