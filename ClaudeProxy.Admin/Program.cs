using ClaudeProxy.Admin;
using ClaudeProxy.Admin.Auth;

// "hash-password PASSWORD" prints a value for ADMIN_PASSWORD_HASH and exits; anything else runs the admin app.
if (args is ["hash-password", var password])
{
    Console.WriteLine(AdminPassword.Hash(password));
    return 0;
}
WebApplication app;
try
{
    app = AdminApp.Build(args);
}
catch (AdminConfigurationException e)
{
    await Console.Error.WriteLineAsync($"claudeproxy-admin: {e.Message}");
    return 2;
}
await app.RunAsync();
return 0;
