using System.Text.Json.Serialization;

namespace ClaudeProxy.Gateway.Tokens;

public sealed record TokenResponse(
    [property: JsonPropertyName("wrapper_token")] string WrapperToken,
    [property: JsonPropertyName("proxy_base_url")] string ProxyBaseUrl,
    [property: JsonPropertyName("expires_at")] DateTimeOffset ExpiresAt);
