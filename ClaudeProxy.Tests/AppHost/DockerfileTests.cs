using System.Text.RegularExpressions;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.AppHost;

/// <summary>
/// The image builds, without a container engine: each Dockerfile's build stage is replayed step by step in an empty
/// folder (its COPY lines copy what they name, its RUN lines run), so a restore layer that misses a project file, a
/// COPY of something the context does not send, or a publish that needs what it was not given fails here.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed partial class DockerfileTests
{
    public static TheoryData<string, string> Images => new() { { "gateway", "ClaudeProxy.Gateway.dll" }, { "admin", "ClaudeProxy.Admin.dll" } };

    [Theory]
    [MemberData(nameof(Images))]
    public async Task The_build_stage_restores_from_project_files_alone_then_publishes(string image, string entry)
    {
        var dockerfile = await File.ReadAllLinesAsync(Path.Combine(Repo.Root, "deploy", "docker", image + ".Dockerfile"));
        var ignore = await IgnorePatternsAsync(Path.Combine(Repo.Root, "deploy", "docker", image + ".Dockerfile.dockerignore"));
        var stages = dockerfile.Where(l => l.StartsWith("FROM ", StringComparison.Ordinal)).ToList();
        // The SDK runs on the build machine's platform and cross-compiles; only the runtime image is per platform.
        Assert.Contains("--platform=$BUILDPLATFORM", stages[0]);
        Assert.Contains(dockerfile, l => l.Trim() == "ARG TARGETARCH");
        Assert.DoesNotContain(dockerfile, l => Regex.IsMatch(l, @"^COPY\s+\.\s+\.", RegexOptions.None));

        var root = Directory.CreateTempSubdirectory("claudeproxy-image-").FullName;
        try
        {
            var work = root;
            var restored = false;
            var copiedSources = false;
            foreach (var line in dockerfile.Skip(dockerfile.ToList().IndexOf(stages[0]) + 1).TakeWhile(l => !l.StartsWith("FROM ", StringComparison.Ordinal)))
            {
                if (line.StartsWith("WORKDIR ", StringComparison.Ordinal))
                {
                    work = Path.Combine(root, line[8..].Trim().TrimStart('/'));
                    Directory.CreateDirectory(work);
                }
                else if (line.StartsWith("COPY ", StringComparison.Ordinal))
                {
                    var parts = line[5..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    var destination = Path.Combine(work, parts[^1]);
                    foreach (var source in parts[..^1])
                    {
                        Copy(Path.Combine(Repo.Root, source), source, destination, parts.Length > 2 || parts[^1].EndsWith('/') || parts[^1] == "./", ignore);
                        copiedSources |= Directory.Exists(Path.Combine(Repo.Root, source)) && !restored;
                    }
                }
                else if (line.StartsWith("RUN ", StringComparison.Ordinal))
                {
                    // The build machine is x64 here; /app is the stage's output, kept inside the temporary folder.
                    var command = line[4..].Replace("$TARGETARCH", "amd64", StringComparison.Ordinal).Replace(" -o /app", $" -o {root}/app", StringComparison.Ordinal);
                    var (code, output, error) = await Kustomize.RunAsync("bash", work, null, "-c", command);
                    Assert.True(code == 0, $"{line}\n{output}\n{error}");
                    restored |= command.Contains("dotnet restore", StringComparison.Ordinal);
                }
            }
            // The restore ran before any source folder was copied: its layer depends on project files alone.
            Assert.True(restored);
            Assert.False(copiedSources, "a source folder is copied before the restore layer");
            Assert.True(File.Exists(Path.Combine(root, "app", entry)), $"{entry} was not published");
            Assert.False(Directory.Exists(Path.Combine(root, "app", ".run")));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task No_build_context_sends_local_secrets_data_or_build_output()
    {
        foreach (var file in new[] { ".dockerignore", "deploy/docker/gateway.Dockerfile.dockerignore", "deploy/docker/admin.Dockerfile.dockerignore" })
        {
            var patterns = await IgnorePatternsAsync(Path.Combine(Repo.Root, file));
            foreach (var path in new[] { ".git/config", ".run/secrets.json", ".run/postgres/PG_VERSION", "ClaudeProxy.Gateway/bin/Release/x.dll", "ClaudeProxy.Admin/obj/project.assets.json", "deploy/k8s/overlays/dev/secrets.env" })
            {
                Assert.True(Ignored(path, patterns), $"{file} lets {path} into the build context");
            }
            Assert.False(Ignored("ClaudeProxy.Gateway/Program.cs", patterns));
        }
    }

    private static async Task<List<Regex>> IgnorePatternsAsync(string file) =>
        [.. (await File.ReadAllLinesAsync(file)).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(Glob)];

    /// <summary>A .dockerignore pattern as a regex over a path and its parents (Go's filepath.Match, with ** for any folders).</summary>
    private static Regex Glob(string pattern)
    {
        var body = Regex.Escape(pattern.TrimStart('/')).Replace(@"\*\*/", "(?:.*/)?", StringComparison.Ordinal).Replace(@"\*", "[^/]*", StringComparison.Ordinal).Replace(@"\?", "[^/]", StringComparison.Ordinal);
        return new Regex("^" + body + "(?:/.*)?$");
    }

    private static bool Ignored(string relative, List<Regex> patterns) => patterns.Any(p => p.IsMatch(relative));

    private static void Copy(string source, string relative, string destination, bool intoFolder, List<Regex> ignore)
    {
        if (File.Exists(source))
        {
            var target = intoFolder ? Path.Combine(destination, Path.GetFileName(source)) : destination;
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(source, target, overwrite: true);
            return;
        }
        Assert.True(Directory.Exists(source), $"COPY {relative}: not in the build context");
        foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            var inContext = Path.GetRelativePath(Repo.Root, file).Replace('\\', '/');
            if (!Ignored(inContext, ignore))
            {
                var target = Path.Combine(destination, Path.GetRelativePath(source, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target, overwrite: true);
            }
        }
    }
}
