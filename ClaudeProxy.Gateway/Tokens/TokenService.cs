using System.Collections.Concurrent;
using ClaudeProxy.Gateway.Configuration;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ClaudeProxy.Gateway.Tokens;

/// <summary>Issues and validates wrapper tokens: HS256 JWTs with the pinned algorithm, issuer, audience and lifetime.</summary>
public sealed class TokenService
{
    public static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(30);
    private const int MaxCachedTokens = 50_000;

    private readonly GatewayOptions _options;
    private readonly TimeProvider _time;
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false, MapInboundClaims = false };
    private readonly TokenValidationParameters _validation;
    private readonly SigningCredentials _signing;
    // Validated tokens by their text. A hit still checks expiry; only tokens that passed the signature check get in.
    private readonly ConcurrentDictionary<string, DeviceIdentity> _cache = new(StringComparer.Ordinal);
    // The same, looked up by the token where it sits in the request header, without copying it out.
    private readonly ConcurrentDictionary<string, DeviceIdentity>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    public TokenService(GatewayOptions options, TimeProvider time)
    {
        _options = options;
        _time = time;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        var key = new SymmetricSecurityKey(options.JwtSecret);
        _signing = new SigningCredentials(key, SecurityAlgorithms.HmacSha256);
        _validation = new TokenValidationParameters
        {
            ValidIssuer = options.JwtIssuer,
            ValidAudience = options.JwtAudience,
            IssuerSigningKey = key,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            ValidateIssuer = true,
            ValidateAudience = true,
            ValidateIssuerSigningKey = true,
            RequireSignedTokens = true,
            // Lifetime is checked below against TimeProvider, so that an expired token can be told from a forged one.
            ValidateLifetime = false,
            RequireExpirationTime = true,
        };
    }

    public IssuedToken Issue(string deviceId, string userId, string orgId, DevicePolicy policy) =>
        Issue(deviceId, userId, orgId, policy, _options.JwtLifetime, null);

    /// <summary>
    /// A signed-in person's access token: admitted under their sign-in device record, and carrying who they are
    /// (<c>sub</c>, <c>email</c>, <c>groups</c>, which Claude Code reads for its own telemetry).
    /// </summary>
    public IssuedToken IssueForPerson(Data.UserRecord user, string orgId, DevicePolicy policy, TimeSpan lifetime) =>
        Issue(Data.UserRecord.DeviceIdOf(user.UserId), user.UserId, orgId, policy, lifetime, user);

    private IssuedToken Issue(string deviceId, string userId, string orgId, DevicePolicy policy, TimeSpan lifetime, Data.UserRecord? person)
    {
        var now = _time.GetUtcNow();
        var expires = now + lifetime;
        var claims = new Dictionary<string, object>
        {
            ["device_id"] = deviceId,
            ["user_id"] = userId,
            ["org_id"] = orgId,
            ["models"] = policy.Models.ToArray(),
            ["rate_limit"] = policy.RateLimit,
            ["policy_version"] = policy.PolicyVersion,
            ["jti"] = Guid.CreateVersion7().ToString("N"),
        };
        if (policy.SpendCap is { } cap)
        {
            claims["spend_cap"] = cap;
        }
        if (policy.TokenLimit is { } tokenLimit)
        {
            claims["token_limit"] = tokenLimit;
        }
        if (person is not null)
        {
            claims["sub"] = person.UserId;
            claims["groups"] = person.Groups.ToArray();
            if (person.Email is { } email)
            {
                claims["email"] = email;
            }
        }
        var token = _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = _options.JwtIssuer,
            Audience = _options.JwtAudience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = expires.UtcDateTime,
            Claims = claims,
            SigningCredentials = _signing,
        });
        // JWT times are whole seconds; report what the token says.
        return new IssuedToken(token, DateTimeOffset.FromUnixTimeSeconds(expires.ToUnixTimeSeconds()));
    }

    /// <summary>The check of a token validated before, found by its text in place; false when it must be validated.</summary>
    public bool TryCached(ReadOnlySpan<char> token, out TokenCheck check)
    {
        if (token.IsEmpty || !_cacheBySpan.TryGetValue(token, out var cached))
        {
            check = default;
            return false;
        }
        check = _time.GetUtcNow() > cached.ExpiresAt + ClockSkew ? TokenCheck.Expired(cached) : TokenCheck.Ok(cached);
        return true;
    }

    public async ValueTask<TokenCheck> ValidateAsync(string? token)
    {
        if (string.IsNullOrEmpty(token))
        {
            return TokenCheck.Missing;
        }
        var now = _time.GetUtcNow();
        if (_cache.TryGetValue(token, out var cached))
        {
            return now > cached.ExpiresAt + ClockSkew ? TokenCheck.Expired(cached) : TokenCheck.Ok(cached);
        }
        if (token.Length > 8192)
        {
            return TokenCheck.Invalid;
        }
        TokenValidationResult result;
        try
        {
            result = await _handler.ValidateTokenAsync(token, _validation);
        }
        catch (Exception)
        {
            return TokenCheck.Invalid;
        }
        if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt || ReadIdentity(jwt) is not { } identity)
        {
            return TokenCheck.Invalid;
        }
        if (identity.IssuedAt - ClockSkew > now || jwt.ValidFrom != DateTime.MinValue && new DateTimeOffset(jwt.ValidFrom, TimeSpan.Zero) - ClockSkew > now)
        {
            return TokenCheck.Invalid;
        }
        if (now > identity.ExpiresAt + ClockSkew)
        {
            return TokenCheck.Expired(identity);
        }
        if (_cache.Count >= MaxCachedTokens)
        {
            _cache.Clear();
        }
        _cache[token] = identity;
        return TokenCheck.Ok(identity);
    }

    private DeviceIdentity? ReadIdentity(JsonWebToken jwt)
    {
        if (!jwt.TryGetPayloadValue<string>("device_id", out var deviceId) || string.IsNullOrEmpty(deviceId) ||
            !jwt.TryGetPayloadValue<string>("jti", out var jti) || jwt.ValidTo == DateTime.MinValue)
        {
            return null;
        }
        jwt.TryGetPayloadValue<string>("user_id", out var userId);
        jwt.TryGetPayloadValue<string>("org_id", out var orgId);
        var models = jwt.TryGetPayloadValue<List<string>>("models", out var list) && list is not null ? list : [.. _options.DefaultModels];
        var rateLimit = jwt.TryGetPayloadValue<int>("rate_limit", out var rl) && rl > 0 ? rl : _options.RateLimitMax;
        int? tokenLimit = jwt.TryGetPayloadValue<int>("token_limit", out var tl) && tl > 0 ? tl : null;
        decimal? spendCap = jwt.TryGetPayloadValue<double>("spend_cap", out var cap) ? (decimal)cap : null;
        jwt.TryGetPayloadValue<int>("policy_version", out var policyVersion);
        jwt.TryGetPayloadValue<string>("email", out var email);
        List<string>? groups = null;
        if (deviceId.StartsWith('@') && jwt.TryGetPayloadValue<List<string>>("groups", out var claimed))
        {
            groups = claimed;
        }
        return new DeviceIdentity
        {
            DeviceId = deviceId,
            UserId = string.IsNullOrEmpty(userId) ? deviceId : userId,
            OrgId = string.IsNullOrEmpty(orgId) ? _options.OrgId : orgId,
            Models = new ModelAllowlist(models),
            RateLimit = rateLimit,
            TokenLimit = tokenLimit,
            SpendCap = spendCap,
            PolicyVersion = policyVersion,
            Email = string.IsNullOrEmpty(email) ? null : email,
            Groups = groups,
            TokenId = jti,
            IssuedAt = jwt.IssuedAt == DateTime.MinValue ? DateTimeOffset.MinValue : new DateTimeOffset(jwt.IssuedAt, TimeSpan.Zero),
            ExpiresAt = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero),
        };
    }
}

public sealed record IssuedToken(string Token, DateTimeOffset ExpiresAt);

public enum TokenStatus { Missing, Invalid, Expired, Valid }

/// <summary>The outcome of checking a token; an expired token still says whose it was.</summary>
public readonly record struct TokenCheck(TokenStatus Status, DeviceIdentity? Identity)
{
    public static readonly TokenCheck Missing = new(TokenStatus.Missing, null);
    public static readonly TokenCheck Invalid = new(TokenStatus.Invalid, null);
    public static TokenCheck Expired(DeviceIdentity identity) => new(TokenStatus.Expired, identity);
    public static TokenCheck Ok(DeviceIdentity identity) => new(TokenStatus.Valid, identity);
}
