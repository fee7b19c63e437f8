using ClaudeProxy.AppHost.Hosting;

// The whole system, as an Aspire AppHost would describe it. `dotnet run --project ClaudeProxy.AppHost` runs it
// with local processes; `... -- publish --output deploy/k8s` writes the Kubernetes manifests instead.
var builder = DistributedApplication.CreateBuilder(args);

var redis = builder.AddRedis("redis");
var postgres = builder.AddPostgres("postgres").WithDataVolume();
var db = postgres.AddDatabase("claudeproxydb");
var anthropic = builder.AddAnthropic("anthropic"); // the real API with ANTHROPIC_API_KEY, else the simulator

var migrations = builder.AddProject("migrations", "ClaudeProxy.Gateway", "migrate")
    .WithReference(db).WaitFor(postgres);

var gateway = builder.AddProject("gateway", "ClaudeProxy.Gateway")
    .WithHttpEndpoint("http", port: 3001)
    .WithHttpEndpoint("management", port: 3002)
    .WithReference(redis).WithReference(db).WithReference(anthropic)
    .WaitFor(redis).WaitForCompletion(migrations)
    .WithReplicas(builder.Gateways);

builder.AddProject("admin", "ClaudeProxy.Admin")
    .WithHttpEndpoint("http", port: 3003)
    .WithReference(gateway.GetEndpoint("management"))
    .WaitFor(gateway);

return await builder.Build().RunAsync();
