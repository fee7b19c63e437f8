using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Settings;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Configuration;

/// <summary>
/// The settings catalogue is the one list of settings: README's tables document exactly its settings with its defaults,
/// no source reads a setting by name around it, and each default is a value its setting accepts.
/// </summary>
public sealed partial class SettingsCatalogueTests
{
    private const string AdminHeading = "### The admin app's settings";

    [Fact]
    public void The_readme_documents_the_gateway_settings_of_the_catalogue_with_their_defaults() =>
        AssertSame(Documented(SettingComponent.Gateway), ReadmeTable(admin: false), "gateway");

    [Fact]
    public void The_readme_documents_the_admin_app_settings_of_the_catalogue_with_their_defaults() =>
        AssertSame(Documented(SettingComponent.AdminApp), ReadmeTable(admin: true), "admin app");

    [Fact]
    public void No_source_reads_a_setting_by_name_outside_the_catalogue()
    {
        var catalogue = Path.Combine(Repo.Root, "ClaudeProxy.ServiceDefaults", "Settings", "SettingsCatalogue.cs");
        var sources = new[] { "ClaudeProxy.Gateway", "ClaudeProxy.Admin", "ClaudeProxy.ServiceDefaults" }
            .SelectMany(p => Directory.EnumerateFiles(Path.Combine(Repo.Root, p), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal) && f != catalogue)
            .ToList();
        Assert.Contains(sources, f => f.EndsWith("GatewayOptions.cs", StringComparison.Ordinal));
        var reads = sources
            .SelectMany(f => NamedRead().Matches(File.ReadAllText(f)).Select(m => $"{Path.GetRelativePath(Repo.Root, f)}: {m.Value}"))
            .ToList();
        Assert.True(reads.Count == 0, "read by name instead of through SettingsCatalogue:\n" + string.Join("\n", reads));
    }

    [Fact]
    public void The_name_check_finds_reads_written_each_way() =>
        Assert.All(new[]
        {
            """config["RATE_LIMIT_MAX"]""", """builder.Configuration["LOG_LEVEL"] is { Length: > 0 }""", """configuration.GetConnectionString("redis")""",
            """Environment.GetEnvironmentVariable("HOME")""", """config.GetValue<int>("PORT")""", """configuration[ "ORG_ID" ] ?? "default" """,
        }, read => Assert.Matches(NamedRead(), read));

    [Fact]
    public void Every_default_is_a_value_its_setting_accepts()
    {
        foreach (var setting in SettingsCatalogue.All.Where(s => s.Default is not null))
        {
            var set = Reader(new() { [setting.Key] = setting.Default });
            var unset = Reader([]);
            object? Read(SettingsReader reader) => setting.Kind switch
            {
                SettingKind.Number => reader.Number(setting),
                SettingKind.Size => reader.Size(setting),
                SettingKind.Boolean => reader.Boolean(setting),
                SettingKind.Choice => setting.Choices.Contains(setting.Default!) ? setting.Default : throw new InvalidOperationException($"{setting.Name}: default is no choice"),
                SettingKind.List => string.Join(",", reader.List(setting)),
                _ => reader.Text(setting),
            };
            Assert.Equal(Read(unset), Read(set));
        }
    }

    [Fact]
    public void Every_setting_has_a_description_and_numbers_a_range()
    {
        Assert.All(SettingsCatalogue.All, s => Assert.False(string.IsNullOrWhiteSpace(s.Description), s.Name));
        Assert.All(SettingsCatalogue.All.Where(s => s.Kind == SettingKind.Number), s => Assert.True(s.Min < s.Max, s.Name));
        Assert.All(SettingsCatalogue.All.Where(s => s.Kind == SettingKind.Choice), s => Assert.True(s.Choices.Count >= 2, s.Name));
        Assert.Equal(SettingsCatalogue.All.Count, SettingsCatalogue.All.Select(s => (s.Name, s.Component)).Distinct().Count());
    }

    private static SettingsReader Reader(Dictionary<string, string?> values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values).Build().Settings();

    private static Dictionary<string, string> Documented(SettingComponent component) =>
        SettingsCatalogue.All.Where(s => s.Documented && s.ReadBy(component)).ToDictionary(s => s.Name, s => s.DocumentedDefault);

    /// <summary>Name and default of each row; a row naming several settings gives each its own default when it lists one per name.</summary>
    private static Dictionary<string, string> ReadmeTable(bool admin)
    {
        var readme = File.ReadAllText(Path.Combine(Repo.Root, "README.md"));
        var start = readme.IndexOf("\n## Settings\n", StringComparison.Ordinal);
        Assert.True(start >= 0, "README has a Settings section");
        var end = readme.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        var section = readme[start..(end < 0 ? readme.Length : end)];
        var split = section.IndexOf(AdminHeading, StringComparison.Ordinal);
        Assert.True(split >= 0, $"README's Settings section has \"{AdminHeading}\"");
        var table = admin ? section[split..] : section[..split];
        var rows = new Dictionary<string, string>();
        foreach (var line in table.Split('\n').Where(l => l.StartsWith("| `", StringComparison.Ordinal)))
        {
            var cells = line.Trim().Trim('|').Split(" | ").Select(c => c.Trim()).ToArray();
            var names = Backticked().Matches(cells[0]).Select(m => m.Groups[1].Value).ToArray();
            var defaults = cells[1].Split(", ");
            for (var i = 0; i < names.Length; i++)
            {
                Assert.True(rows.TryAdd(names[i], names.Length > 1 && defaults.Length == names.Length ? defaults[i] : cells[1]), $"{names[i]} is listed twice");
            }
        }
        Assert.NotEmpty(rows);
        return rows;
    }

    private static void AssertSame(Dictionary<string, string> catalogue, Dictionary<string, string> readme, string table)
    {
        var problems = catalogue.Keys.Except(readme.Keys).Select(n => $"{n} is in the catalogue but not in README's {table} table")
            .Concat(readme.Keys.Except(catalogue.Keys).Select(n => $"{n} is in README's {table} table but not in the catalogue"))
            .Concat(catalogue.Keys.Intersect(readme.Keys).Where(n => catalogue[n] != readme[n])
                .Select(n => $"{n}: README's {table} table says {readme[n]}, the catalogue {catalogue[n]}"))
            .ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [GeneratedRegex(@"`([A-Za-z_][A-Za-z0-9_]*)`")]
    private static partial Regex Backticked();

    /// <summary>A configuration or environment read by a literal upper-case name (assignments are not reads).</summary>
    [GeneratedRegex("""(?:[Cc]onfig(?:uration)?\s*\[\s*"[A-Z][A-Za-z0-9_:]*"\s*\](?!\s*(?:\?\?)?=[^=>])|(?:GetConnectionString|GetEnvironmentVariable|GetValue<[^>]+>)\(\s*"[A-Za-z][A-Za-z0-9_:]*")""")]
    private static partial Regex NamedRead();
}
