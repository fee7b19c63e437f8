using System.Security.Cryptography;
using System.Text.Json;
using Aspire.Hosting.Publishing;

namespace ClaudeProxy.AppHost.Local;

/// <summary>
/// Secrets generated on the first run and kept in <c>secrets.json</c> beside the local data (readable by its owner
/// only), so the passwords stay those the data was created with. When publishing, each one is a parameter the
/// deployment generates.
/// </summary>
public sealed class DataFolderSecrets(string dataDirectory)
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
    private readonly object _gate = new();

    public string Path { get; } = System.IO.Path.Combine(dataDirectory, "secrets.json");

    /// <summary>Names of the secrets this run generated (empty when every one was kept from an earlier run).</summary>
    public List<string> Generated { get; } = [];

    public string GetOrCreate(string name, int length)
    {
        lock (_gate)
        {
            var secrets = File.Exists(Path)
                ? JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Path)) ?? []
                : [];
            if (secrets.TryGetValue(name, out var value))
            {
                return value;
            }
            // Letters and digits only: the values go into connection strings and URLs without escaping.
            value = RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", length);
            secrets[name] = value;
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
            // Created readable by the owner only, never for a moment with the default mode.
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using (var file = new StreamWriter(Path, System.Text.Encoding.UTF8, options))
            {
                file.Write(JsonSerializer.Serialize(secrets, Indented));
            }
            OwnerOnly(Path);
            Generated.Add(name);
            return value;
        }
    }

    public static void OwnerOnly(string file)
    {
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }
}

/// <summary>A parameter's default: in run mode the value kept in <see cref="DataFolderSecrets"/>; in the manifest, "generate".</summary>
public sealed class DataFolderSecretDefault(DataFolderSecrets secrets, string name, int length) : ParameterDefault
{
    public override string GetDefaultValue() => secrets.GetOrCreate(name, length);

    public override void WriteToManifest(ManifestPublishingContext context) =>
        new GenerateParameterDefault { MinLength = length, Special = false }.WriteToManifest(context);
}

public static class DataFolderSecretExtensions
{
    /// <summary>A secret parameter; <paramref name="description"/> says what it must be (the Kubernetes placeholder is made from it).</summary>
    public static IResourceBuilder<ParameterResource> AddSecret(this IDistributedApplicationBuilder builder, DataFolderSecrets secrets, string name,
        string description, int length = 32) =>
        builder.AddParameter(name, new DataFolderSecretDefault(secrets, name, length), secret: true).WithDescription(description);
}
