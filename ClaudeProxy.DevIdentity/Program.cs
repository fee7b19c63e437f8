using ClaudeProxy.DevIdentity;

// NOT FOR PRODUCTION. Stand-alone: dotnet run --project ClaudeProxy.DevIdentity -- --urls http://127.0.0.1:3004
// The AppHost runs it in run mode when no OIDC_AUTHORITY is configured; its traces and metrics then go to the dashboard.
var app = DevIdentityApplication.Build(args, builder =>
{
    if (builder.ExportsTelemetry())
    {
        builder.ConfigureOpenTelemetry();
    }
});
await app.RunAsync();
