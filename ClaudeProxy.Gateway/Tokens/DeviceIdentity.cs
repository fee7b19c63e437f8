namespace ClaudeProxy.Gateway.Tokens;

/// <summary>What a valid wrapper token says about the device that holds it.</summary>
public sealed class DeviceIdentity
{
    public required string DeviceId { get; init; }
    public required string UserId { get; init; }
    public required string OrgId { get; init; }
    public required ModelAllowlist Models { get; init; }
    public required int RateLimit { get; init; }
    public int? TokenLimit { get; init; }
    public decimal? SpendCap { get; init; }
    public int PolicyVersion { get; init; }
    /// <summary>The signed-in person's email (sign-in tokens only).</summary>
    public string? Email { get; init; }
    /// <summary>The provider's groups the person was in when the token was issued (sign-in tokens only).</summary>
    public IReadOnlyList<string>? Groups { get; init; }
    /// <summary>The policy worked out for this token, kept with it while the policy snapshot it came from is current.</summary>
    public Policies.EffectivePolicy? Policy { get; set; }
    public required string TokenId { get; init; }
    public DateTimeOffset IssuedAt { get; init; }
    public DateTimeOffset ExpiresAt { get; init; }

    /// <summary>A person signed in with the identity provider, rather than a device enrolled by name.</summary>
    public bool IsPerson => DeviceId.StartsWith('@');
}

/// <summary>The device's policy as it goes into a token.</summary>
public sealed record DevicePolicy(
    IReadOnlyList<string> Models,
    int RateLimit,
    int? TokenLimit,
    decimal? SpendCap,
    int PolicyVersion);
