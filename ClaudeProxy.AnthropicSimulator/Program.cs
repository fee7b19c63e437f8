using ClaudeProxy.AnthropicSimulator;

// Stand-alone: dotnet run --project ClaudeProxy.AnthropicSimulator -- --urls http://127.0.0.1:4000 [--api-key KEY]
var app = SimulatorApp.Build(args);
await app.RunAsync();
