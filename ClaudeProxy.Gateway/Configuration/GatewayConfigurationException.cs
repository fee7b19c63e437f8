namespace ClaudeProxy.Gateway.Configuration;

/// <summary>A setting is missing or wrong. Its message is the one line the process prints before it stops.</summary>
public sealed class GatewayConfigurationException(string message) : Exception(message);
