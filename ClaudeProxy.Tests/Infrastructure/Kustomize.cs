using System.Diagnostics;
using System.Text.Json.Nodes;
using k8s;
using YamlDotNet.RepresentationModel;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// Builds a kustomization with <c>kubectl kustomize</c> and reads the result: every object as YAML tree, and the
/// built-in kinds also as the Kubernetes client's typed models.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public static class Kustomize
{
    public static readonly string K8s = Path.Combine(Repo.Root, "deploy", "k8s");

    /// <summary>Kinds of the custom resources the overlays and components use (CRDs of cert-manager, External Secrets, Gateway API).</summary>
    public static readonly IReadOnlySet<string> CustomKinds = new HashSet<string>(StringComparer.Ordinal)
    {
        "cert-manager.io/v1/Issuer", "external-secrets.io/v1/ExternalSecret", "gateway.networking.k8s.io/v1/HTTPRoute",
    };

    public static async Task<(int Code, string Out, string Err)> RunAsync(string file, string? workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory ?? Repo.Root };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(4));
        return (process.ExitCode, await stdout, await stderr);
    }

    public static async Task<Built> BuildAsync(string directory)
    {
        var (code, yaml, err) = await RunAsync("kubectl", null, null, "kustomize", directory);
        Assert.True(code == 0, $"kubectl kustomize {directory}: {err}");
        return new Built(yaml);
    }

    /// <summary>
    /// A copy of deploy/k8s in a temporary folder with the dev overlay's secrets made by its own script (as an operator
    /// does), so that the dev overlay builds.
    /// </summary>
    public static async Task<string> CopyWithDevSecretsAsync(string anthropicKey)
    {
        var copy = Directory.CreateTempSubdirectory("claudeproxy-k8s-").FullName;
        foreach (var file in Directory.GetFiles(K8s, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(copy, Path.GetRelativePath(K8s, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            if (!file.EndsWith(".env", StringComparison.Ordinal))
            {
                File.Copy(file, target);
            }
        }
        var script = Path.Combine(copy, "overlays", "dev", "make-secrets.sh");
        File.SetUnixFileMode(script, File.GetUnixFileMode(Path.Combine(K8s, "overlays", "dev", "make-secrets.sh")));
        var (code, output, err) = await RunAsync(script, null, new Dictionary<string, string> { ["ANTHROPIC_API_KEY"] = anthropicKey });
        Assert.True(code == 0, output + err);
        LastMakeSecretsOutput = output;
        return copy;
    }

    public static string LastMakeSecretsOutput { get; private set; } = "";

    public sealed class Built
    {
        public Built(string yaml)
        {
            Yaml = yaml;
            foreach (var doc in yaml.Split("\n---\n", StringSplitOptions.RemoveEmptyEntries))
            {
                var tree = ToJson(doc);
                var kind = $"{tree["apiVersion"]}/{tree["kind"]}";
                Trees.Add(tree);
                if (!CustomKinds.Contains(kind))
                {
                    Typed.Add(KubernetesYaml.LoadAllFromString(doc).Single());
                }
            }
        }

        public string Yaml { get; }

        /// <summary>Every object as it was written.</summary>
        public List<JsonObject> Trees { get; } = [];

        /// <summary>The built-in kinds as typed models.</summary>
        public List<object> Typed { get; } = [];

        public IEnumerable<T> Of<T>() => Typed.OfType<T>();

        public JsonObject Tree(string kind, string name) =>
            Trees.Single(t => (string?)t["kind"] == kind && (string?)t["metadata"]!["name"] == name);
    }

    /// <summary>A YAML document as JSON, scalars as strings (what was written, not what a schema makes of it).</summary>
    public static JsonObject ToJson(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return (JsonObject)Convert(stream.Documents.Single().RootNode)!;

        static JsonNode? Convert(YamlNode node) => node switch
        {
            YamlMappingNode map => new JsonObject(map.Children.Select(c => KeyValuePair.Create(((YamlScalarNode)c.Key).Value!, Convert(c.Value)))),
            YamlSequenceNode seq => new JsonArray([.. seq.Children.Select(Convert)]),
            YamlScalarNode scalar => scalar.Value is null ? null : JsonValue.Create(scalar.Value),
            _ => throw new InvalidOperationException(node.GetType().Name),
        };
    }
}
