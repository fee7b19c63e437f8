using ClaudeProxy.AnthropicSimulator;

// Stand-alone: dotnet run --project ClaudeProxy.AnthropicSimulator -- --urls http://127.0.0.1:4000 [--api-key KEY]
// Under the AppHost its traces and metrics go to the dashboard; otherwise it records none.
var app = SimulatorApp.Build(args, builder =>
{
    if (builder.ExportsTelemetry())
    {
        builder.ConfigureOpenTelemetry();
    }
});
await app.RunAsync();
