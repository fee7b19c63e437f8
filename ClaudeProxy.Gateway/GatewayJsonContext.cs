using System.Text.Json.Serialization;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway;

[JsonSerializable(typeof(TokenResponse))]
internal sealed partial class GatewayJsonContext : JsonSerializerContext;
