namespace ClaudeProxy.Tests.Infrastructure;

public static class Repo
{
    /// <summary>The repository root, found above the test's output folder.</summary>
    public static string Root { get; } = Find();

    /// <summary>The build configuration the tests were built with (Debug or Release), from the output path.</summary>
    public static string Configuration => AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";

    public static string AppHostDll => Path.Combine(Root, "ClaudeProxy.AppHost", "bin", Configuration, "net10.0", "ClaudeProxy.AppHost.dll");

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "ClaudeProxy.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("ClaudeProxy.sln not found");
    }
}
