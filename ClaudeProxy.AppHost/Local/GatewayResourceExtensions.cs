namespace ClaudeProxy.AppHost.Local;

public static class GatewayResourceExtensions
{
    /// <summary>
    /// The Anthropic API the gateway forwards to: the real one with the <c>anthropic-api-key</c> parameter (or
    /// ANTHROPIC_API_KEY) when one is configured or when publishing; otherwise, in run mode, the simulator.
    /// </summary>
    public static IResourceBuilder<ProjectResource> WithAnthropic(this IResourceBuilder<ProjectResource> gateway,
        IDistributedApplicationBuilder builder, DataFolderSecrets secrets)
    {
        var configured = builder.Configuration["Parameters:anthropic-api-key"] is { Length: > 0 } p ? p
            : builder.Configuration["ANTHROPIC_API_KEY"] is { Length: > 0 } k ? k : null;
        if (builder.ExecutionContext.IsPublishMode || configured is not null)
        {
            builder.Configuration["Parameters:anthropic-api-key"] ??= configured;
            gateway.WithEnvironment("ANTHROPIC_API_KEY", builder.AddParameter("anthropic-api-key", secret: true).WithDescription("the Anthropic API key"));
            if (builder.ExecutionContext.IsRunMode && builder.Configuration["ANTHROPIC_BASE_URL"] is { Length: > 0 } baseUrl)
            {
                gateway.WithEnvironment("ANTHROPIC_BASE_URL", baseUrl);
            }
            return gateway;
        }
        var key = builder.AddSecret(secrets, "simulator-api-key", "the simulator's API key");
        var simulator = builder.AddProject<Projects.ClaudeProxy_AnthropicSimulator>("anthropic-simulator")
            .WithArgs("--record", "false")
            .WithHttpEndpoint(name: "http")
            .WithHttpHealthCheck("/_sim/stats")
            .WithEnvironment("SIMULATOR_API_KEY", key);
        return gateway
            .WithEnvironment("ANTHROPIC_BASE_URL", simulator.GetEndpoint("http"))
            .WithEnvironment("ANTHROPIC_API_KEY", key)
            .WaitFor(simulator);
    }

    /// <summary>Run mode only: listen on loopback alone (the AppHost's proxies face the machine).</summary>
    public static IResourceBuilder<ProjectResource> WithLoopbackOnly(this IResourceBuilder<ProjectResource> project) =>
        project.ApplicationBuilder.ExecutionContext.IsRunMode ? project.WithEnvironment("HOST", "127.0.0.1") : project;

    /// <summary>Run mode only: spool usage into the data folder, and say where the proxy is.</summary>
    public static IResourceBuilder<ProjectResource> WithLocalSettings(this IResourceBuilder<ProjectResource> gateway, string dataDirectory)
    {
        if (gateway.ApplicationBuilder.ExecutionContext.IsRunMode)
        {
            gateway.WithLoopbackOnly()
                .WithEnvironment("USAGE_SPOOL_DIR", Path.Combine(dataDirectory, "spool"))
                .WithEnvironment("PROXY_BASE_URL", gateway.GetEndpoint("http"));
        }
        return gateway;
    }

    /// <summary>
    /// The admin app's sign-in: a generated password locally (shown once, kept with the other secrets); when
    /// publishing, a parameter holding its hash (<c>dotnet ClaudeProxy.Admin.dll hash-password PASSWORD</c>).
    /// </summary>
    public static IResourceBuilder<ProjectResource> WithAdminPassword(this IResourceBuilder<ProjectResource> admin,
        IDistributedApplicationBuilder builder, DataFolderSecrets secrets) =>
        builder.ExecutionContext.IsPublishMode
            ? admin.WithEnvironment("ADMIN_PASSWORD_HASH", builder.AddParameter("admin-password-hash", secret: true).WithDescription("the output of hash-password"))
            : admin.WithEnvironment("ADMIN_PASSWORD", builder.AddSecret(secrets, "admin-password", "the admin app's password", 16));

    /// <summary>Says once, on the run that generated them, where the secrets are and what the admin password is.</summary>
    public static void ShowGeneratedSecrets(this IDistributedApplicationBuilder builder, DataFolderSecrets secrets)
    {
        if (!builder.ExecutionContext.IsRunMode)
        {
            return;
        }
        builder.Eventing.Subscribe<AfterResourcesCreatedEvent>((e, _) =>
        {
            if (secrets.Generated.Count > 0)
            {
                var logger = e.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ClaudeProxy");
                logger.LogWarning("Generated {Secrets} into {Path} (readable by you only). Admin app: user admin, password {Password}",
                    string.Join(", ", secrets.Generated), secrets.Path, secrets.GetOrCreate("admin-password", 16));
            }
            return Task.CompletedTask;
        });
    }
}
