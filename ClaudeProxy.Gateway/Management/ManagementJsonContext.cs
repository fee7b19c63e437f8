using System.Text.Json.Serialization;
using ClaudeProxy.Contracts;

namespace ClaudeProxy.Gateway.Management;

/// <summary>The contracts the gateway writes outside a management API answer: the heartbeat it keeps in Redis.</summary>
[JsonSerializable(typeof(GatewayInstance))]
[JsonSerializable(typeof(BreakerStatus))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class ManagementJsonContext : JsonSerializerContext;
