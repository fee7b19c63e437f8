using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.AppHost;

/// <summary>The AppHost end to end, started by Aspire.Hosting.Testing as `aspire run` starts it (simulator upstream, free ports).</summary>
[Collection(AppHostCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class AppHostTests
{
    [Fact]
    public async Task The_whole_system_starts_healthy_records_a_stream_answers_claude_code_signs_in_and_leaves_no_process()
    {
        var appHost = await AspireAppHost.StartAsync(dashboard: false);
        try
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(appHost.DataDirectory, "secrets.json")));
            var secrets = appHost.Secrets;
            var device = "apphost-" + Guid.NewGuid().ToString("N")[..6];

            using var gateway = appHost.Client("gateway");
            using var boot = await gateway.PostAsJsonAsync("/bootstrap", new { device_id = device }).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(HttpStatusCode.OK, boot.StatusCode);
            var token = JsonDocument.Parse(await boot.Content.ReadAsStringAsync()).RootElement.GetProperty("wrapper_token").GetString();
            using var stream = await gateway.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token)).WaitAsync(TimeSpan.FromSeconds(30));
            var body = await stream.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Contains("simulator", body);
            Assert.Contains("event: message_stop", body);

            // The usage row, read back through the management API with the operator key the AppHost generated.
            using var management = appHost.Client("gateway", "management");
            management.DefaultRequestHeaders.Authorization = new("Bearer", secrets["admin-api-key"]);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            JsonElement events;
            do
            {
                using var response = await management.GetAsync($"/manage/v1/usage/events?device={device}").WaitAsync(TimeSpan.FromSeconds(10));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                events = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            }
            while (events.GetProperty("total").GetInt32() == 0 && DateTime.UtcNow < deadline && await PauseAsync());
            Assert.Equal(1, events.GetProperty("total").GetInt32());

            // Claude Code's own CLI, pointed at the fresh system, gets the simulator's answer and ends its turn.
            using var cliBoot = await gateway.PostAsJsonAsync("/bootstrap", new { device_id = device + "-cli" }).WaitAsync(TimeSpan.FromSeconds(30));
            var cliToken = JsonDocument.Parse(await cliBoot.Content.ReadAsStringAsync()).RootElement.GetProperty("wrapper_token").GetString()!;
            var (exit, output) = await ClaudeCli.RunAsync(appHost.Endpoint("gateway").ToString().TrimEnd('/'), cliToken, "hello");
            Assert.True(exit == 0, output);
            Assert.Equal("Hello from the Anthropic simulator.", output.Trim());

            // The admin app signs in with the generated password (a form post with its antiforgery token).
            using var cookies = new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false };
            using var admin = new HttpClient(cookies) { BaseAddress = appHost.Endpoint("admin") };
            var login = await admin.GetStringAsync("/login").WaitAsync(TimeSpan.FromSeconds(30));
            var antiforgery = AntiforgeryField().Match(login).Groups[1].Value;
            using var signIn = await admin.PostAsync("/account/login", new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["username"] = "admin", ["password"] = secrets["admin-password"], ["__RequestVerificationToken"] = antiforgery,
            })).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(HttpStatusCode.Redirect, signIn.StatusCode);
            Assert.Equal("/", signIn.Headers.Location?.ToString());
            using var home = await admin.GetAsync("/").WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(HttpStatusCode.OK, home.StatusCode);

            // Without OIDC_AUTHORITY the development identity provider runs, and its client secret was generated locally.
            using var devIdentity = appHost.Client("devidentity");
            var discovery = JsonDocument.Parse(await devIdentity.GetStringAsync("/.well-known/openid-configuration").WaitAsync(TimeSpan.FromSeconds(30))).RootElement;
            Assert.StartsWith(discovery.GetProperty("issuer").GetString()!, discovery.GetProperty("authorization_endpoint").GetString(), StringComparison.Ordinal);
            Assert.True(secrets.ContainsKey("devidentity-client-secret"));
        }
        finally
        {
            await appHost.DisposeAsync();
        }
        Assert.True(appHost.Processes.Count >= 8, $"only {appHost.Processes.Count} processes seen");
        Assert.Empty(await appHost.LeftoverProcessesAsync());
        appHost.DeleteData();
    }

    private static async Task<bool> PauseAsync()
    {
        await Task.Delay(200);
        return true;
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();
}

/// <summary>
/// Whole-AppHost tests run one at a time and after the others, alone: each starts DCP, two servers and four projects,
/// which on two cores would slow the other tests past their timeouts.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AppHostCollection
{
    public const string Name = "AppHost";
}
