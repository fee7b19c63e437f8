using ClaudeProxy.Gateway;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Data;

// "migrate" applies the database migrations and exits (for a Kubernetes Job); anything else runs the gateway.
var migrateOnly = args is ["migrate", ..];
WebApplication app;
try
{
    app = GatewayApplication.Build(migrateOnly ? args[1..] : args, migrateOnly ? b => b.Configuration["MIGRATE_ON_START"] = "false" : null);
}
catch (GatewayConfigurationException e)
{
    await Console.Error.WriteLineAsync($"claudeproxy-gateway: {e.Message}");
    return 2;
}
if (migrateOnly)
{
    if (app.Services.GetService<Migrator>() is not { } migrator)
    {
        await Console.Error.WriteLineAsync("claudeproxy-gateway: migrate needs a database: set ConnectionStrings__claudeproxydb or DATABASE_URL.");
        return 2;
    }
    await migrator.MigrateAsync(CancellationToken.None);
    await Console.Out.WriteLineAsync("claudeproxy-gateway: database is up to date");
    return 0;
}
await app.RunAsync();
return 0;
