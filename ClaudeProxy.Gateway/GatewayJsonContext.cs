using System.Text.Json.Serialization;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway;

[JsonSerializable(typeof(TokenResponse))]
[JsonSerializable(typeof(Contracts.BreakerStatus))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class GatewayJsonContext : JsonSerializerContext;
