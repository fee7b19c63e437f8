using System.Buffers;
using System.Text.Json;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Limits;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.AspNetCore.Http.Features;

namespace ClaudeProxy.Gateway.SignIn;

/// <summary>
/// The OAuth side of Claude Code's gateway sign-in: discovery (RFC 8414), device authorization (RFC 8628), the token
/// endpoint (device-code and refresh grants) and revocation (RFC 7009). Every answer is <c>Cache-Control: no-store</c>;
/// errors are OAuth's <c>{"error", "error_description"}</c>, which is all Claude Code reads.
/// </summary>
public static partial class OAuthEndpoints
{
    public const string DiscoveryPath = "/.well-known/oauth-authorization-server";
    public const string DeviceAuthorizationPath = "/oauth/device_authorization";
    public const string TokenPath = "/oauth/token";
    public const string RevocationPath = "/oauth/revoke";
    public const string DeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code";
    private const int MaxFormBytes = 16 * 1024;

    public static IEndpointRouteBuilder MapOAuthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet(DiscoveryPath, Discovery);
        app.MapPost(DeviceAuthorizationPath, DeviceAuthorization);
        app.MapPost(TokenPath, Token);
        app.MapPost(RevocationPath, Revoke);
        return app;
    }

    /// <summary>The gateway's public origin and path: <c>PROXY_BASE_URL</c>, else the request's own scheme and host.</summary>
    public static string PublicBase(HttpContext context, GatewayOptions gateway) =>
        gateway.ProxyBaseUrl ?? $"{context.Request.Scheme}://{context.Request.Host}{context.Request.PathBase}";

    private static Task Discovery(HttpContext context, GatewayOptions gateway)
    {
        var issuer = PublicBase(context, gateway);
        return WriteJsonAsync(context, 200, w =>
        {
            w.WriteString("issuer", issuer);
            w.WriteString("device_authorization_endpoint", issuer + DeviceAuthorizationPath);
            w.WriteString("token_endpoint", issuer + TokenPath);
            w.WriteString("revocation_endpoint", issuer + RevocationPath);
            w.WriteStartArray("grant_types_supported");
            w.WriteStringValue(DeviceCodeGrant);
            w.WriteStringValue("refresh_token");
            w.WriteEndArray();
            w.WriteStartArray("response_types_supported");
            w.WriteEndArray();
            w.WriteStartArray("token_endpoint_auth_methods_supported");
            w.WriteStringValue("none");
            w.WriteEndArray();
            w.WriteStartArray("revocation_endpoint_auth_methods_supported");
            w.WriteStringValue("none");
            w.WriteEndArray();
            w.WriteStartArray("scopes_supported");
            w.WriteStringValue("openid");
            w.WriteStringValue("profile");
            w.WriteStringValue("email");
            w.WriteEndArray();
            w.WriteNumber("gateway_protocol_version", 1);
        });
    }

    private static async Task DeviceAuthorization(HttpContext context, SignInStore store, SignInOptions options, GatewayOptions gateway,
        AdmissionService limits)
    {
        if (await ReadFormAsync(context) is not { } _)
        {
            return;
        }
        var address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var decision = await limits.AcquireAsync("signin:addr:" + address, options.RateLimit, TimeSpan.FromMinutes(1), context.RequestAborted);
        if (decision is not { Allowed: true })
        {
            if (decision is { } d)
            {
                context.Response.Headers["retry-after"] = Refusals.WholeSeconds(d.RetryAfter);
            }
            await WriteErrorAsync(context, decision is null ? 503 : 429, decision is null ? "temporarily_unavailable" : "slow_down",
                decision is null ? "the gateway cannot check its limits right now; try again shortly" : "too many sign-in codes asked for from this address");
            return;
        }
        var (deviceCode, authorization) = await store.CreateAsync(address, context.RequestAborted);
        var verification = PublicBase(context, gateway) + VerificationPage.Path;
        var display = SignInCodes.Display(authorization.UserCode);
        await WriteJsonAsync(context, 200, w =>
        {
            w.WriteString("device_code", deviceCode);
            w.WriteString("user_code", display);
            w.WriteString("verification_uri", verification);
            w.WriteString("verification_uri_complete", verification + "?user_code=" + Uri.EscapeDataString(display));
            w.WriteNumber("expires_in", (int)options.DeviceCodeLifetime.TotalSeconds);
            w.WriteNumber("interval", authorization.IntervalSeconds);
            w.WriteString("login_notice", "Sign in with your company account in the browser, and check that it shows this code.");
        });
    }

    private static async Task Token(HttpContext context, SignInStore store, SignInOptions options, TokenService tokens, GatewayOptions gateway,
        IdentityProvider provider, SecretDataProtection protection)
    {
        if (await ReadFormAsync(context) is not { } form)
        {
            return;
        }
        switch (Single(form, "grant_type"))
        {
            case DeviceCodeGrant:
                await DeviceCodeAsync(context, form, store, options, tokens, gateway);
                return;
            case "refresh_token":
                await RefreshAsync(context, form, store, options, tokens, gateway, provider, protection);
                return;
            case null:
                await WriteErrorAsync(context, 400, "invalid_request", "grant_type is required (once)");
                return;
            default:
                await WriteErrorAsync(context, 400, "unsupported_grant_type", $"this gateway serves the grants {DeviceCodeGrant} and refresh_token");
                return;
        }
    }

    private static async Task DeviceCodeAsync(HttpContext context, IFormCollection form, SignInStore store, SignInOptions options, TokenService tokens,
        GatewayOptions gateway)
    {
        if (Single(form, "device_code") is not { Length: > 0 and <= 256 } deviceCode)
        {
            await WriteErrorAsync(context, 400, "invalid_request", "device_code is required (once)");
            return;
        }
        var (outcome, authorization) = await store.PollAsync(deviceCode, context.RequestAborted);
        switch (outcome)
        {
            case PollOutcome.Pending:
                await WriteErrorAsync(context, 400, "authorization_pending", "the person has not finished signing in yet");
                return;
            case PollOutcome.SlowDown:
                await WriteErrorAsync(context, 400, "slow_down", "polling too often: wait 5 seconds more between polls");
                return;
            case PollOutcome.Expired:
                await WriteErrorAsync(context, 400, "expired_token", "the sign-in code has expired: start the sign-in again");
                return;
            case PollOutcome.Denied:
                await WriteErrorAsync(context, 400, "access_denied", "the sign-in was refused");
                return;
            case PollOutcome.Invalid:
                await WriteErrorAsync(context, 400, "invalid_grant", "unknown or already used device code");
                return;
        }
        var person = await store.AdmitAsync(authorization!.UserId!, context.RequestAborted);
        if (person?.Policy is null)
        {
            await WriteErrorAsync(context, 400, "access_denied", "this person may not sign in to this gateway");
            return;
        }
        var refresh = await store.IssueRefreshTokenAsync(person.User.UserId, Guid.CreateVersion7(), authorization.IdpRefreshToken, context.RequestAborted);
        await WriteTokensAsync(context, tokens, options, gateway, person, refresh);
    }

    /// <summary>
    /// The refresh grant. The token is checked, the person's standing read and the identity provider asked again
    /// before the token is spent: a provider that is away leaves the token usable for a retry. A spent token shown
    /// again is a stolen copy or a replay, and ends the whole sign-in.
    /// </summary>
    private static async Task RefreshAsync(HttpContext context, IFormCollection form, SignInStore store, SignInOptions options, TokenService tokens,
        GatewayOptions gateway, IdentityProvider provider, SecretDataProtection protection)
    {
        if (Single(form, "refresh_token") is not { Length: > 0 and <= 256 } token)
        {
            await WriteErrorAsync(context, 400, "invalid_request", "refresh_token is required (once)");
            return;
        }
        var record = await store.FindRefreshTokenAsync(token, context.RequestAborted);
        if (record is null)
        {
            await WriteErrorAsync(context, 400, "invalid_grant", "unknown refresh token: sign in again");
            return;
        }
        if (record.UsedAt is not null)
        {
            await store.RevokeFamilyAsync(record.FamilyId, context.RequestAborted);
            await WriteErrorAsync(context, 400, "invalid_grant", "this refresh token was already used: the sign-in has ended, sign in again");
            return;
        }
        if (record.RevokedAt is not null || record.ExpiresAt <= context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow())
        {
            await WriteErrorAsync(context, 400, "invalid_grant", "the sign-in has ended: sign in again");
            return;
        }
        var person = await store.AdmitAsync(record.UserId, context.RequestAborted);
        if (person?.Policy is null)
        {
            await store.RevokeFamilyAsync(record.FamilyId, context.RequestAborted);
            // 401 invalid_grant: the answer Claude Code takes as "this person may no longer sign in".
            await WriteErrorAsync(context, 401, "invalid_grant", "this person may no longer sign in to this gateway");
            return;
        }
        var idpToken = record.IdpRefreshToken;
        if (idpToken is not null && protection.UnprotectText(idpToken) is { } providerToken)
        {
            var (verdict, renewed, described) = await provider.RefreshAsync(providerToken, person.User.Subject, context.RequestAborted);
            if (verdict == ProviderVerdict.Refused)
            {
                await store.RevokeFamilyAsync(record.FamilyId, context.RequestAborted);
                await WriteErrorAsync(context, 401, "invalid_grant", "the identity provider no longer signs this person in");
                return;
            }
            if (verdict == ProviderVerdict.Unavailable)
            {
                context.Response.Headers["retry-after"] = "30";
                await WriteErrorAsync(context, 503, "temporarily_unavailable", "the identity provider cannot be reached; try again shortly");
                return;
            }
            if (renewed is not null)
            {
                idpToken = protection.ProtectText(renewed);
            }
            if (described is not null)
            {
                await store.UpdateAsync(person.User.UserId, described, context.RequestAborted);
                person = await store.AdmitAsync(record.UserId, context.RequestAborted) ?? person;
            }
        }
        if (!await store.SpendRefreshTokenAsync(record.Id, context.RequestAborted))
        {
            // Another refresh spent it in the meantime: only one of two at once may continue the sign-in.
            await store.RevokeFamilyAsync(record.FamilyId, context.RequestAborted);
            await WriteErrorAsync(context, 400, "invalid_grant", "this refresh token was already used: the sign-in has ended, sign in again");
            return;
        }
        var refresh = await store.IssueRefreshTokenAsync(person.User.UserId, record.FamilyId, idpToken, context.RequestAborted);
        await WriteTokensAsync(context, tokens, options, gateway, person, refresh);
    }

    /// <summary>RFC 7009: always 200 for a well-formed request, whether or not the token was known (§2.2).</summary>
    private static async Task Revoke(HttpContext context, SignInStore store)
    {
        if (await ReadFormAsync(context) is not { } form)
        {
            return;
        }
        if (Single(form, "token") is not { Length: > 0 } token)
        {
            await WriteErrorAsync(context, 400, "invalid_request", "token is required (once)");
            return;
        }
        // A refresh token ends its whole sign-in. An access token is self-contained and lives out its short lifetime:
        // ending it at once would mean a lookup on every request (see README).
        if (token.Length <= 256 && await store.FindRefreshTokenAsync(token, context.RequestAborted) is { } record)
        {
            await store.RevokeFamilyAsync(record.FamilyId, context.RequestAborted);
        }
        NoStore(context);
        context.Response.StatusCode = 200;
    }

    private static Task WriteTokensAsync(HttpContext context, TokenService tokens, SignInOptions options, GatewayOptions gateway, PersonAdmission person,
        string refreshToken)
    {
        var issued = tokens.IssueForPerson(person.User, gateway.OrgId, person.Policy!, options.AccessTokenLifetime);
        return WriteJsonAsync(context, 200, w =>
        {
            w.WriteString("access_token", issued.Token);
            w.WriteString("token_type", "Bearer");
            w.WriteNumber("expires_in", (int)options.AccessTokenLifetime.TotalSeconds);
            w.WriteString("refresh_token", refreshToken);
            if (person.User.Email is { } email)
            {
                w.WriteString("email", email);
            }
        });
    }

    /// <summary>
    /// The form body, bounded and of the right type; null after writing <c>invalid_request</c>. Unknown parameters
    /// are ignored, as RFC 6749 §3.2 asks.
    /// </summary>
    private static async Task<IFormCollection?> ReadFormAsync(HttpContext context)
    {
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxFormBytes;
        }
        if (context.Request.ContentLength > MaxFormBytes)
        {
            await WriteErrorAsync(context, 413, "invalid_request", $"the form may be at most {MaxFormBytes} bytes");
            return null;
        }
        if (!context.Request.HasFormContentType || context.Request.ContentType?.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase) == true)
        {
            await WriteErrorAsync(context, 400, "invalid_request", "the body must be application/x-www-form-urlencoded");
            return null;
        }
        try
        {
            return await context.Request.ReadFormAsync(new FormOptions { ValueCountLimit = 32, KeyLengthLimit = 64, ValueLengthLimit = MaxFormBytes },
                context.RequestAborted);
        }
        catch (Exception e) when (e is InvalidDataException or BadHttpRequestException or IOException && !context.RequestAborted.IsCancellationRequested)
        {
            await WriteErrorAsync(context, e is BadHttpRequestException { StatusCode: 413 } ? 413 : 400, "invalid_request", "the form could not be read");
            return null;
        }
    }

    /// <summary>A parameter given exactly once (RFC 6749 §3.1: parameters must not repeat); null otherwise.</summary>
    private static string? Single(IFormCollection form, string name) =>
        form.TryGetValue(name, out var values) && values.Count == 1 ? values[0] : null;

    public static Task WriteErrorAsync(HttpContext context, int status, string error, string description) =>
        WriteJsonAsync(context, status, w =>
        {
            w.WriteString("error", error);
            w.WriteString("error_description", description);
        });

    private static async Task WriteJsonAsync(HttpContext context, int status, Action<Utf8JsonWriter> body)
    {
        if (context.Response.HasStarted)
        {
            return;
        }
        NoStore(context);
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }

    private static void NoStore(HttpContext context)
    {
        context.Response.Headers.CacheControl = "no-store";
        context.Response.Headers.Pragma = "no-cache";
    }
}
