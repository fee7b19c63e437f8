using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Settings;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Configuration;

/// <summary>The gateway refuses to start with a secret anyone could know: short, a shipped placeholder or example, or an obvious filler.</summary>
public sealed partial class SecretPolicyTests
{
    public static TheoryData<string, string> UnsafeSecrets() => new()
    {
        { "JWT_SECRET", "REPLACE_WITH_AT_LEAST_32_RANDOM_BYTES" },
        { "JWT_SECRET", new string('s', 40) },
        { "JWT_SECRET", "changeme-changeme-changeme-changeme-0" },
        { "ADMIN_API_KEY", "REPLACE_WITH_A_RANDOM_OPERATOR_KEY" },
        { "ADMIN_API_KEY", "596ea40f310fcf30472bfd8b251f42fc" },
        { "ADMIN_API_KEY", "bench-operator" },
        { "ADMIN_API_KEY", "short" },
    };

    [Theory]
    [MemberData(nameof(UnsafeSecrets))]
    public async Task An_unsafe_secret_stops_the_gateway_with_a_line_naming_the_setting_and_how_to_make_one(string setting, string value)
    {
        var environment = new Dictionary<string, string>
        {
            ["ANTHROPIC_API_KEY"] = TestSecrets.MasterKey(),
            ["JWT_SECRET"] = TestSecrets.JwtSecret(),
            ["ADMIN_API_KEY"] = TestSecrets.JwtSecret(),
            ["PORT"] = "0",
            ["MANAGEMENT_PORT"] = "0",
            ["HOST"] = "127.0.0.1",
        };
        environment[setting] = value;
        var (exitCode, stdout, stderr) = await GatewayProcess.RunAsync(environment);
        Assert.NotEqual(0, exitCode);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(setting, line);
        Assert.Contains("openssl rand", line);
        Assert.DoesNotContain(value, stdout + stderr);
    }

    [Fact]
    public void A_random_secret_of_32_bytes_is_accepted()
    {
        Assert.Null(SecretPolicy.Check("JWT_SECRET", TestSecrets.JwtSecret()));
        Assert.Null(SecretPolicy.Check("ADMIN_API_KEY", Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16))));
    }

    /// <summary>
    /// Every value the repository's manifests, scripts and documentation assign to a secret setting is refused, so a
    /// deployment copied from them cannot start with it. A new example added anywhere without a refusal fails here.
    /// </summary>
    [Fact]
    public void Every_secret_value_shipped_in_the_repository_is_refused()
    {
        var roots = new[] { "README.md", "docs", "deploy", "scripts", "ClaudeProxy.AppHost", "bench/run.sh" }
            .Select(p => Path.Combine(Repo.Root, p));
        var files = roots.SelectMany(p => File.Exists(p) ? [p] : Directory.Exists(p)
            ? Directory.EnumerateFiles(p, "*", SearchOption.AllDirectories).Where(f => !f.Contains("/bin/") && !f.Contains("/obj/") && !f.EndsWith(".png"))
            : []).ToList();
        var found = new List<(string File, string Setting, string Value)>();
        foreach (var file in files)
        {
            foreach (Match match in AssignedSecret().Matches(File.ReadAllText(file)))
            {
                found.Add((Path.GetRelativePath(Repo.Root, file), match.Groups["setting"].Value, match.Groups["value"].Value));
            }
        }
        // The manifests ship no secret values any more (overlays generate them or read a secret store); the pattern
        // must still catch each way a value can be written, or this test would pass by finding nothing.
        foreach (var sample in new[] { "JWT_SECRET: \"REPLACE_WITH_AT_LEAST_32_RANDOM_BYTES\"", "ADMIN_API_KEY=596ea40f310fcf30472bfd8b251f42fc", "[\"JWT_SECRET\"] = \"abcdefgh12345678\"" })
        {
            Assert.Matches(AssignedSecret(), sample);
        }
        foreach (var (file, setting, value) in found)
        {
            Assert.True(SecretPolicy.Check(setting, value) is not null, $"{file} ships a value for {setting} that the gateway would accept");
        }
    }

    // JWT_SECRET: "x", ADMIN_API_KEY=x, "ADMIN_API_KEY"] = "x", operator key (ADMIN_API_KEY):   x
    [GeneratedRegex("""(?<setting>JWT_SECRET|ADMIN_API_KEY)["'\])]*\s*(?:=|:)\s*["']?(?<value>[A-Za-z0-9_+/=.-]{8,})""")]
    private static partial Regex AssignedSecret();
}
