namespace ClaudeProxy.AppHost.Local;

/// <summary>redis-server run by Aspire as a local executable, password protected, its data kept in a folder.</summary>
public sealed class LocalRedisResource(string name, string dataDirectory, ParameterResource password)
    : ExecutableResource(name, "redis-server", dataDirectory), IResourceWithConnectionString
{
    public string DataDirectory { get; } = dataDirectory;
    public ParameterResource Password { get; } = password;
    public EndpointReference PrimaryEndpoint => new(this, "tcp");

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"{PrimaryEndpoint.Property(EndpointProperty.IPV4Host)}:{PrimaryEndpoint.Property(EndpointProperty.Port)},password={Password}");
}

public static class LocalRedisExtensions
{
    /// <summary>
    /// Redis: in run mode redis-server on a free loopback port with an append-only file in <paramref name="dataDirectory"/>;
    /// when publishing, Aspire's Redis container.
    /// </summary>
    public static IResourceBuilder<IResourceWithConnectionString> AddLocalRedis(this IDistributedApplicationBuilder builder, string name,
        string dataDirectory, IResourceBuilder<ParameterResource> password)
    {
        if (builder.ExecutionContext.IsPublishMode)
        {
            return builder.AddRedis(name, password: password);
        }
        Directory.CreateDirectory(dataDirectory);
        var redis = new LocalRedisResource(name, dataDirectory, password.Resource);
        var config = Path.Combine(dataDirectory, "redis.conf");
        string? connectionString = null;
        builder.Eventing.Subscribe<ConnectionStringAvailableEvent>(redis, async (_, ct) => connectionString = await redis.ConnectionStringExpression.GetValueAsync(ct));
        // The password goes into a file only the owner reads rather than onto a command line anyone can list.
        builder.Eventing.Subscribe<BeforeResourceStartedEvent>(redis, async (_, ct) =>
        {
            await File.WriteAllTextAsync(config, $"requirepass \"{await password.Resource.GetValueAsync(ct)}\"\n", ct);
            DataFolderSecrets.OwnerOnly(config);
        });
        builder.Services.AddHealthChecks().AddRedis(_ => connectionString ?? throw new InvalidOperationException($"{name} has no connection string yet"), name: $"{name}_check");
        return builder.AddResource(redis)
            .WithEndpoint(name: "tcp", scheme: "tcp", isProxied: false)
            .WithArgs(context =>
            {
                context.Args.Add(config);
                context.Args.Add("--port");
                context.Args.Add(redis.PrimaryEndpoint.Property(EndpointProperty.TargetPort));
                context.Args.Add("--bind");
                context.Args.Add("127.0.0.1");
                context.Args.Add("--dir");
                context.Args.Add(dataDirectory);
                context.Args.Add("--appendonly");
                context.Args.Add("yes");
                context.Args.Add("--save");
                context.Args.Add("");
            })
            .WithHealthCheck($"{name}_check");
    }
}
