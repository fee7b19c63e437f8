namespace ClaudeProxy.AppHost.Hosting;

/// <summary>A part of the system: something to start, wait for, and reference from others.</summary>
public abstract class Resource(string name)
{
    public string Name { get; } = name;
    public List<Resource> WaitsFor { get; } = [];
    public List<Resource> WaitsForCompletion { get; } = [];
    public List<object> References { get; } = [];
}

public sealed class RedisResource(string name) : Resource(name)
{
    public int Port { get; set; }
    public string ConnectionString => $"127.0.0.1:{Port}";
}

public sealed class PostgresResource(string name) : Resource(name)
{
    public int Port { get; set; }
    public bool Persistent { get; set; }
    public List<DatabaseResource> Databases { get; } = [];
}

public sealed class DatabaseResource(string name, PostgresResource server) : Resource(name)
{
    public PostgresResource Server { get; } = server;
    public string ConnectionString => $"Host=127.0.0.1;Port={Server.Port};Username=postgres;Database={Name}";
}

/// <summary>The Anthropic API: the real one when ANTHROPIC_API_KEY is set, otherwise the simulator, started locally.</summary>
public sealed class AnthropicResource(string name) : Resource(name)
{
    public string? RealKey { get; init; } = Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY") is { Length: > 0 } k ? k : null;
    public string BaseUrl { get; set; } = Environment.GetEnvironmentVariable("ANTHROPIC_BASE_URL") is { Length: > 0 } u ? u : "https://api.anthropic.com";
    public bool Simulated => RealKey is null;
    public string Key { get; set; } = "";
    public int Port { get; set; }
}

public sealed class Endpoint(ProjectResource project, string name, int port)
{
    public ProjectResource Project { get; } = project;
    public string Name { get; } = name;
    public int Port { get; set; } = port;
    public string Url => $"http://127.0.0.1:{Port}";
}

/// <summary>One of our projects, run from its build output.</summary>
public sealed class ProjectResource(string name, string project, string[] args) : Resource(name)
{
    public string Project { get; } = project;
    public string[] Args { get; } = args;
    public List<Endpoint> Endpoints { get; } = [];
    public int Replicas { get; set; } = 1;
    public bool OneShot => Args.Length > 0;

    public Endpoint GetEndpoint(string name) => Endpoints.First(e => e.Name == name);
}

public static class ResourceExtensions
{
    public static T WaitFor<T>(this T resource, Resource other) where T : Resource
    {
        resource.WaitsFor.Add(other is DatabaseResource db ? db.Server : other);
        return resource;
    }

    public static T WaitForCompletion<T>(this T resource, ProjectResource other) where T : Resource
    {
        resource.WaitsForCompletion.Add(other);
        return resource;
    }

    public static T WithReference<T>(this T resource, object reference) where T : Resource
    {
        resource.References.Add(reference);
        return resource;
    }

    public static ProjectResource WithHttpEndpoint(this ProjectResource project, string name, int port)
    {
        project.Endpoints.Add(new Endpoint(project, name, port));
        return project;
    }

    public static ProjectResource WithReplicas(this ProjectResource project, int replicas)
    {
        project.Replicas = Math.Max(1, replicas);
        return project;
    }

    public static PostgresResource WithDataVolume(this PostgresResource postgres)
    {
        postgres.Persistent = true;
        return postgres;
    }

    public static DatabaseResource AddDatabase(this PostgresResource postgres, string name)
    {
        var db = new DatabaseResource(name, postgres);
        postgres.Databases.Add(db);
        return db;
    }
}
