using ClaudeProxy.Gateway;
using ClaudeProxy.Gateway.Configuration;

WebApplication app;
try
{
    app = GatewayApplication.Build(args);
}
catch (GatewayConfigurationException e)
{
    await Console.Error.WriteLineAsync($"claudeproxy-gateway: {e.Message}");
    return 2;
}
await app.RunAsync();
return 0;
