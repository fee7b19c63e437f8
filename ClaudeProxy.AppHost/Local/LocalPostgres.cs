using Npgsql;

namespace ClaudeProxy.AppHost.Local;

/// <summary>A PostgreSQL server run by Aspire as a local executable (through <c>postgres-server.sh</c>), its cluster kept in a folder.</summary>
public sealed class LocalPostgresResource(string name, string script, ParameterResource password)
    : ExecutableResource(name, "bash", Path.GetDirectoryName(script)!), IResourceWithConnectionString
{
    public ParameterResource Password { get; } = password;
    public EndpointReference PrimaryEndpoint => new(this, "tcp");
    public List<LocalPostgresDatabaseResource> Databases { get; } = [];

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"Host={PrimaryEndpoint.Property(EndpointProperty.IPV4Host)};Port={PrimaryEndpoint.Property(EndpointProperty.Port)};Username=postgres;Password={Password}");
}

/// <summary>A database on a <see cref="LocalPostgresResource"/>, created when the server is first ready.</summary>
public sealed class LocalPostgresDatabaseResource(string name, LocalPostgresResource parent)
    : Resource(name), IResourceWithParent<LocalPostgresResource>, IResourceWithConnectionString
{
    public LocalPostgresResource Parent { get; } = parent;

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create($"{Parent};Database={Name}");
}

public static class LocalPostgresExtensions
{
    /// <summary>
    /// PostgreSQL with one database: in run mode a local server on a free loopback port whose cluster lives in
    /// <paramref name="dataDirectory"/>; when publishing, Aspire's PostgreSQL container and database.
    /// </summary>
    public static IResourceBuilder<IResourceWithConnectionString> AddLocalPostgres(this IDistributedApplicationBuilder builder, string name,
        string database, string dataDirectory, IResourceBuilder<ParameterResource> password)
    {
        if (builder.ExecutionContext.IsPublishMode)
        {
            return builder.AddPostgres(name, password: password).AddDatabase(database);
        }
        var script = Path.Combine(builder.AppHostDirectory, "Local", "postgres-server.sh");
        // As root the server runs as the postgres user, which must be able to reach its folder.
        var parent = Path.GetDirectoryName(dataDirectory)!;
        Directory.CreateDirectory(parent);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(parent, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        }
        var server = new LocalPostgresResource(name, script, password.Resource);
        var db = new LocalPostgresDatabaseResource(database, server);
        server.Databases.Add(db);

        string? connectionString = null;
        builder.Eventing.Subscribe<ConnectionStringAvailableEvent>(server, async (_, ct) => connectionString = await server.ConnectionStringExpression.GetValueAsync(ct));
        builder.Services.AddHealthChecks().AddNpgSql(_ => connectionString ?? throw new InvalidOperationException($"{name} has no connection string yet"), name: $"{name}_check");

        // Aspire passes a parent's state on to its children for containers only: the database follows the server here.
        builder.Eventing.Subscribe<BeforeResourceStartedEvent>(server, async (e, ct) =>
            await e.Services.GetRequiredService<ResourceNotificationService>().PublishUpdateAsync(db, s => s with { State = KnownResourceStates.Starting }));
        builder.Eventing.Subscribe<ResourceReadyEvent>(server, async (e, ct) =>
        {
            await CreateDatabaseAsync(connectionString!, database, ct);
            await e.Services.GetRequiredService<ResourceNotificationService>().PublishUpdateAsync(db, s => s with { State = KnownResourceStates.Running });
        });
        builder.Eventing.Subscribe<ResourceStoppedEvent>(server, async (e, ct) =>
            await e.Services.GetRequiredService<ResourceNotificationService>().PublishUpdateAsync(db, s => s with { State = KnownResourceStates.Exited }));

        var serverBuilder = builder.AddResource(server)
            .WithEndpoint(name: "tcp", scheme: "tcp", isProxied: false)
            .WithArgs(context =>
            {
                context.Args.Add(script);
                context.Args.Add(dataDirectory);
                context.Args.Add(server.PrimaryEndpoint.Property(EndpointProperty.TargetPort));
            })
            .WithEnvironment("POSTGRES_PASSWORD", password)
            .WithHealthCheck($"{name}_check");
        return builder.AddResource(db)
            .WithParentRelationship(serverBuilder)
            .WithInitialState(new CustomResourceSnapshot { ResourceType = "PostgresDatabase", Properties = [], State = KnownResourceStates.NotStarted });
    }

    private static async Task CreateDatabaseAsync(string connectionString, string database, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", connection);
        exists.Parameters.AddWithValue("name", database);
        if (await exists.ExecuteScalarAsync(cancellationToken) is null)
        {
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{database}\"", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
        }
    }
}
