using ClaudeProxy.AppHost.Kubernetes;
using ClaudeProxy.AppHost.Local;

// The whole system. `aspire run` (or ./run.sh) runs it locally with Aspire's dashboard; `aspire publish -o deploy/k8s/base`
// writes aspire-manifest.json and the Kubernetes base from the same model.
var builder = DistributedApplication.CreateBuilder(args);
var data = Path.GetFullPath(builder.Configuration["DataDir"] is { Length: > 0 } dir ? dir : Path.Combine(builder.AppHostDirectory, "..", ".run"));
var secrets = new DataFolderSecrets(data);
var fixedPorts = !builder.Configuration.GetValue("DynamicPorts", false);
int? Port(int port) => fixedPorts ? port : null;

var redis = builder.AddLocalRedis("redis", Path.Combine(data, "redis"), builder.AddSecret(secrets, "redis-password", "a Redis password"));
var db = builder.AddLocalPostgres("postgres", "claudeproxydb", Path.Combine(data, "postgres"), builder.AddSecret(secrets, "postgres-password", "a database password"));
var jwtSecret = builder.AddSecret(secrets, "jwt-secret", "at least 32 random bytes", 48);
var adminApiKey = builder.AddSecret(secrets, "admin-api-key", "a random operator key");
var identity = builder.AddIdentityProvider(secrets, Port(3004));

var migrations = builder.AddProject<Projects.ClaudeProxy_Gateway>("migrations")
    .WithArgs("migrate")
    .WithReference(db).WaitFor(db);

var gateway = builder.AddProject<Projects.ClaudeProxy_Gateway>("gateway")
    .WithHttpEndpoint(port: Port(3001), name: "http", env: "PORT")
    .WithHttpEndpoint(port: Port(3002), name: "management", env: "MANAGEMENT_PORT")
    .WithHttpHealthCheck("/readyz")
    .WithReference(redis).WithReference(db)
    .WithEnvironment("JWT_SECRET", jwtSecret)
    .WithEnvironment("ADMIN_API_KEY", adminApiKey)
    .WithEnvironment("MIGRATE_ON_START", "false")
    .WithAnthropic(builder, secrets)
    .WithLocalSettings(data)
    .WithIdentityProvider(identity)
    .WaitFor(redis).WaitForCompletion(migrations)
    .WithReplicas(builder.Configuration.GetValue("Gateways", builder.ExecutionContext.IsPublishMode ? 2 : 1))
    .DisableForwardedHeaders();

builder.AddProject<Projects.ClaudeProxy_Admin>("admin")
    .WithHttpEndpoint(port: Port(3003), name: "http", env: "PORT")
    .WithHttpHealthCheck("/readyz")
    .WithReference(gateway.GetEndpoint("management"))
    .WithEnvironment("ADMIN_API_KEY", adminApiKey)
    .WithAdminPassword(builder, secrets)
    .WithIdentityProvider(identity, admin: true)
    .WithLoopbackOnly()
    .WaitFor(gateway);

builder.AddKubernetesPublishing();
builder.ShowGeneratedSecrets(secrets);

builder.Build().Run();
