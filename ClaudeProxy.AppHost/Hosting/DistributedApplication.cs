namespace ClaudeProxy.AppHost.Hosting;

/// <summary>Options read from the command line: <c>[publish --output DIR] [--gateways N] [--data-dir DIR] [--dynamic-ports] [--configuration C]</c>.</summary>
public sealed class AppHostOptions
{
    public bool Publish { get; init; }
    public string Output { get; init; } = "deploy/k8s";
    public int Gateways { get; init; } = 1;
    public string? DataDir { get; init; }
    public bool DynamicPorts { get; init; }
    public string Configuration { get; init; } = "Release";

    public static AppHostOptions Parse(string[] args)
    {
        string? Value(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        return new AppHostOptions
        {
            Publish = args.Contains("publish"),
            Output = Value("--output") ?? "deploy/k8s",
            Gateways = int.TryParse(Value("--gateways"), out var n) && n > 0 ? n : 1,
            DataDir = Value("--data-dir"),
            DynamicPorts = args.Contains("--dynamic-ports"),
            // By default, run the projects as built in the same configuration as this AppHost.
            Configuration = Value("--configuration")
                ?? (AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release"),
        };
    }
}

/// <summary>The builder that an Aspire AppHost's Program.cs talks to, kept to what this system needs.</summary>
public sealed class DistributedApplicationBuilder(AppHostOptions options)
{
    public AppHostOptions Options { get; } = options;
    public List<Resource> Resources { get; } = [];
    public int Gateways => Options.Gateways;

    private T Add<T>(T resource) where T : Resource
    {
        Resources.Add(resource);
        return resource;
    }

    public RedisResource AddRedis(string name) => Add(new RedisResource(name));

    public PostgresResource AddPostgres(string name) => Add(new PostgresResource(name));

    public AnthropicResource AddAnthropic(string name) => Add(new AnthropicResource(name));

    public ProjectResource AddProject(string name, string project, params string[] args) => Add(new ProjectResource(name, project, args));

    public DistributedApplication Build() => new(this);
}

public sealed class DistributedApplication(DistributedApplicationBuilder builder)
{
    public static DistributedApplicationBuilder CreateBuilder(string[] args) => new(AppHostOptions.Parse(args));

    public IReadOnlyList<Resource> Resources => builder.Resources;

    public async Task<int> RunAsync()
    {
        var root = SolutionRoot();
        if (builder.Options.Publish)
        {
            var output = Path.GetFullPath(Path.Combine(Directory.GetCurrentDirectory(), builder.Options.Output));
            Publisher.Write(builder.Resources, output, root);
            Console.WriteLine($"Wrote the Kubernetes manifests, aspire-manifest.json and Dockerfiles to {output}");
            return 0;
        }
        await using var runner = new Runner(builder.Resources, builder.Options, root);
        return await runner.RunAsync();
    }

    /// <summary>The folder holding ClaudeProxy.sln: from the working directory, or from where this program lives.</summary>
    public static string SolutionRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "ClaudeProxy.sln")))
                {
                    return dir.FullName;
                }
            }
        }
        throw new InvalidOperationException("ClaudeProxy.sln not found above the working directory");
    }
}
