using ClaudeProxy.Gateway;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Data;

// "migrate" applies the database migrations and exits (the Kubernetes init container runs it); anything else runs the gateway.
var migrateOnly = args is ["migrate", ..];
WebApplication app;
try
{
    app = GatewayApplication.Build(migrateOnly ? args[1..] : args, migrateOnly ? MigrateOnly : null);
}
catch (GatewayConfigurationException e)
{
    await Console.Error.WriteLineAsync($"claudeproxy-gateway: {e.Message}");
    return 2;
}
if (migrateOnly)
{
    if (!app.Services.GetRequiredService<BackingServices>().Postgres)
    {
        await Console.Error.WriteLineAsync("claudeproxy-gateway: migrate needs a database: set ConnectionStrings__claudeproxydb or DATABASE_URL.");
        return 2;
    }
    await app.Services.GetRequiredService<Migrator>().MigrateAsync(CancellationToken.None);
    await Console.Out.WriteLineAsync("claudeproxy-gateway: database is up to date");
    return 0;
}
await app.RunAsync();
return 0;

// Migrating needs the database alone: the upstream key and the token secret are not used, so placeholders stand in.
static void MigrateOnly(WebApplicationBuilder builder)
{
    builder.Configuration["MIGRATE_ON_START"] = "false";
    builder.Configuration["ANTHROPIC_API_KEY"] ??= "not-used-by-migrate";
    builder.Configuration["JWT_SECRET"] ??= Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(GatewayOptions.MinJwtSecretBytes));
}
