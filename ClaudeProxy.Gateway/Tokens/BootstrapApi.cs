using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Errors;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Limits;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// <c>POST /bootstrap</c> and <c>POST /refresh</c>: how a device gets and renews its wrapper token. A device that
/// enrolled a key (see <see cref="SignedRequest"/>) must sign both with it; <c>DEVICE_KEYS=required</c> admits no other.
/// </summary>
public static partial class BootstrapApi
{
    public const string BootstrapPath = "/bootstrap";
    public const string RefreshPath = "/refresh";
    private const int MaxBodyBytes = 16 * 1024;

    [GeneratedRegex(@"^[A-Za-z0-9._:-]{1,128}\z")]
    private static partial Regex DeviceIdPattern();

    public static IEndpointRouteBuilder MapBootstrapApi(this IEndpointRouteBuilder app)
    {
        app.MapPost(BootstrapPath, Bootstrap);
        app.MapPost(RefreshPath, Refresh);
        return app;
    }

    private static async Task Bootstrap(HttpContext context, IDeviceDirectory devices, TokenService tokens, GatewayOptions options,
        AdmissionService limits, LimitOptions limitOptions, NonceStore nonces, TimeProvider time)
    {
        // Before the body and the per-address budget: a client outside the allowed networks costs nothing and leaves nothing.
        // The address is the one forwarded headers gave, and only a trusted proxy's are believed.
        if (options.BootstrapAllowedNetworks.Count > 0 && !NetworkList.Contains(options.BootstrapAllowedNetworks, context.Connection.RemoteIpAddress))
        {
            await ApiErrors.WriteAsync(context, 403, "permission_error", "bootstrap is not served to this network: enrol the device from a network the operator allows");
            return;
        }
        var ip = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        if (!await WithinLimitAsync(context, limits, limitOptions, "addr:" + ip, "too many token requests from this address"))
        {
            return;
        }
        if (await ReadBodyAsync(context) is not { } raw)
        {
            return;
        }
        JsonElement body;
        try
        {
            using var document = JsonDocument.Parse(raw);
            body = document.RootElement.Clone();
        }
        catch (JsonException)
        {
            await ApiErrors.WriteAsync(context, 400, "request body must be a JSON object with device_id");
            return;
        }
        if (body.ValueKind != JsonValueKind.Object ||
            !body.TryGetProperty("device_id", out var idElement) || idElement.ValueKind != JsonValueKind.String ||
            idElement.GetString() is not { } deviceId || !DeviceIdPattern().IsMatch(deviceId))
        {
            await ApiErrors.WriteAsync(context, 400, "device_id is required: 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'");
            return;
        }
        var appVersion = OptionalString(body, "app_version", 64);
        var userId = OptionalString(body, "user_id", 128);
        if (appVersion.Invalid || userId.Invalid)
        {
            await ApiErrors.WriteAsync(context, 400, "app_version (at most 64 characters) and user_id (at most 128) must be strings");
            return;
        }
        var publicKey = OptionalString(body, "public_key", int.MaxValue);
        var algorithm = OptionalString(body, "key_algorithm", 32);
        DeviceKey? offered = null;
        if (publicKey.Invalid || algorithm.Invalid)
        {
            await ApiErrors.WriteAsync(context, 400, "public_key and key_algorithm must be strings: base64 of a P-256 SubjectPublicKeyInfo, and \"p256\"");
            return;
        }
        if (publicKey.Value is { } offeredText && !DeviceKeys.TryParse(offeredText, algorithm.Value, out offered, out var keyError))
        {
            await ApiErrors.WriteAsync(context, 400, keyError!);
            return;
        }
        var proof = await ProveAsync(context, deviceId, BootstrapPath, raw, offered, devices, options, nonces, time);
        if (!proof.Passed)
        {
            return;
        }
        var admission = await devices.BootstrapAsync(new BootstrapRequest(deviceId, appVersion.Value, userId.Value, proof.Key), context.RequestAborted);
        await WriteToken(context, admission, tokens, options);
    }

    private static async Task Refresh(HttpContext context, IDeviceDirectory devices, TokenService tokens, GatewayOptions options,
        AdmissionService limits, LimitOptions limitOptions, NonceStore nonces, TimeProvider time)
    {
        var check = await tokens.ValidateAsync(CredentialReader.Read(context.Request));
        switch (check.Status)
        {
            case TokenStatus.Missing:
                await ApiErrors.WriteAsync(context, 401, "missing wrapper token: send it as Authorization: Bearer or x-api-key");
                return;
            case TokenStatus.Expired:
                await ApiErrors.WriteAsync(context, 401, "wrapper token has expired: call POST /bootstrap again");
                return;
            case TokenStatus.Invalid:
                await ApiErrors.WriteAsync(context, 401, "invalid wrapper token: call POST /bootstrap again");
                return;
        }
        var identity = check.Identity!;
        if (identity.IsPerson)
        {
            // A sign-in is renewed with its refresh token, where the identity provider is asked again; never here.
            await ApiErrors.WriteAsync(context, 400, "a signed-in person's token is renewed at POST /oauth/token with its refresh token, not here");
            return;
        }
        // Per device, not per address: behind an ingress every device arrives from the same address.
        if (!await WithinLimitAsync(context, limits, limitOptions, "refresh:" + identity.DeviceId, "too many token refreshes for this device"))
        {
            return;
        }
        if (await ReadBodyAsync(context) is not { } raw)
        {
            return;
        }
        var proof = await ProveAsync(context, identity.DeviceId, RefreshPath, raw, null, devices, options, nonces, time);
        if (!proof.Passed)
        {
            return;
        }
        var admission = await devices.RefreshAsync(identity, proof.Key, context.RequestAborted);
        await WriteToken(context, admission, tokens, options);
    }

    /// <summary>
    /// Checks the request's signature, when it has one, against the key it offers to enrol or else the device's
    /// enrolled key, and uses up its nonce. Passed with a null key: an unsigned request that
    /// <c>DEVICE_KEYS</c> allows (the directory still refuses it for a device with a key). Writes the error itself.
    /// </summary>
    private static async ValueTask<(bool Passed, DeviceKey? Key)> ProveAsync(HttpContext context, string deviceId, string endpoint, byte[] body,
        DeviceKey? offered, IDeviceDirectory devices, GatewayOptions options, NonceStore nonces, TimeProvider time)
    {
        var signed = SignedRequest.Read(context.Request, out var headerError);
        if (headerError is not null)
        {
            await ApiErrors.WriteAsync(context, 400, headerError);
            return default;
        }
        if (signed is null)
        {
            if (offered is not null)
            {
                await ApiErrors.WriteAsync(context, 401, "enrolling a key needs proof that the device holds it: sign the request with it (x-device-signature)");
                return default;
            }
            if (options.DeviceKeys == DeviceKeyMode.Required)
            {
                await ApiErrors.WriteAsync(context, 401, "this gateway requires device keys: enrol a key and sign the request (claude-token-helper does both)");
                return default;
            }
            return (true, null);
        }
        var key = offered ?? await devices.EnrolledKeyAsync(deviceId, context.RequestAborted);
        if (key is null)
        {
            await ApiErrors.WriteAsync(context, 401, endpoint == BootstrapPath
                ? "this device has no enrolled key: send public_key in the body to enrol one"
                : "this device has no enrolled key (an operator may have reset it): call POST /bootstrap with public_key to enrol one");
            return default;
        }
        if (!signed.IsFresh(time.GetUtcNow()))
        {
            await ApiErrors.WriteAsync(context, 401, $"{SignedRequest.TimestampHeader} is more than {SignedRequest.MaxSkew.TotalSeconds:0} s from the gateway's clock: check the device's clock");
            return default;
        }
        if (!DeviceKeys.Verify(key, signed.Message(context.Request.Method, endpoint, body), signed.Signature))
        {
            await ApiErrors.WriteAsync(context, 401, offered is not null
                ? "the signature does not verify with the offered public_key"
                : "the signature does not verify with this device's enrolled key");
            return default;
        }
        switch (await nonces.TryUseAsync(deviceId, signed.Nonce, context.RequestAborted))
        {
            case null:
                await ApiErrors.WriteAsync(context, 503, "api_error", "the gateway cannot check request nonces right now (Redis is unavailable); retry shortly");
                return default;
            case false:
                await ApiErrors.WriteAsync(context, 401, "this signed request was already used (its nonce was seen): sign every request with a new nonce");
                return default;
        }
        return (true, key);
    }

    /// <summary>The exact body bytes (they are signed), at most <see cref="MaxBodyBytes"/>; null when the 413 was written.</summary>
    private static async ValueTask<byte[]?> ReadBodyAsync(HttpContext context)
    {
        if (context.Request.ContentLength > MaxBodyBytes)
        {
            await ApiErrors.WriteAsync(context, 413, "request body is too large");
            return null;
        }
        try
        {
            using var buffer = new MemoryStream();
            await new LimitedStream(context.Request.Body, MaxBodyBytes).CopyToAsync(buffer, context.RequestAborted);
            return buffer.ToArray();
        }
        catch (LimitedStream.TooLargeException)
        {
            await ApiErrors.WriteAsync(context, 413, "request body is too large");
            return null;
        }
    }

    /// <summary>Token issuing is cheap to ask for and costly to abuse: a limit per address or per device, in the shared limiter.</summary>
    private static async ValueTask<bool> WithinLimitAsync(HttpContext context, AdmissionService limits, LimitOptions options, string key, string refusal)
    {
        var decision = await limits.AcquireAsync(key, options.BootstrapRateLimit, options.BootstrapWindow, context.RequestAborted);
        if (decision is { Allowed: true })
        {
            return true;
        }
        await Refusals.WriteLimiterRefusalAsync(context, decision, refusal);
        return false;
    }

    private static async Task WriteToken(HttpContext context, DeviceAdmission admission, TokenService tokens, GatewayOptions options)
    {
        if (admission.Policy is not { } policy)
        {
            await ApiErrors.WriteAsync(context, admission.Status, admission.Refusal ?? "device not admitted");
            return;
        }
        var issued = tokens.Issue(admission.DeviceId, admission.UserId, admission.OrgId, policy);
        var baseUrl = options.ProxyBaseUrl ?? $"{context.Request.Scheme}://{context.Request.Host}";
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.WriteAsJsonAsync(new TokenResponse(issued.Token, baseUrl, issued.ExpiresAt), GatewayJsonContext.Default.TokenResponse, cancellationToken: context.RequestAborted);
    }

    private static (string? Value, bool Invalid) OptionalString(JsonElement body, string name, int maxLength)
    {
        if (!body.TryGetProperty(name, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return (null, false);
        }
        return element.ValueKind == JsonValueKind.String && element.GetString() is { } s && s.Length <= maxLength ? (s, false) : (null, true);
    }
}
