using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using ClaudeProxy.Admin;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace ClaudeProxy.Tests.Admin;

/// <summary>
/// The admin app as deployed: several pods or restarts sharing one folder of cookie keys, behind an ingress that
/// terminates TLS (the app sees http) and forwards the client's address. Sign-ins here need no gateway: the pages
/// render their shell first and only then ask the management API.
/// </summary>
public sealed partial class AdminDeploymentTests : IDisposable
{
    private const string SignInCookie = "claudeproxy.admin";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("claudeproxy-admin-deploy-");

    public void Dispose() => _root.Delete(recursive: true);

    [Fact]
    public async Task A_sign_in_survives_a_restart_that_reads_the_same_keys_folder_and_not_one_that_reads_another()
    {
        var keys = Path.Combine(_root.FullName, "keys");
        string cookie;
        await using (var first = await StartAsync(new() { ["DATA_PROTECTION_KEYS_DIR"] = keys }))
        {
            using var operatorClient = new Operator(first);
            using var signIn = await operatorClient.SignInAsync(AdminBrowser.Password);
            Assert.Equal("/", signIn.Headers.Location?.OriginalString);
            cookie = operatorClient.Cookie(SignInCookie);
            using var page = await operatorClient.GetAsync("/");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        }

        await using (var restarted = await StartAsync(new() { ["DATA_PROTECTION_KEYS_DIR"] = keys }))
        {
            using var sameBrowser = new Operator(restarted);
            sameBrowser.Cookies[SignInCookie] = cookie;
            using var page = await sameBrowser.GetAsync("/");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Contains("_framework/blazor.web.js", await page.Content.ReadAsStringAsync());
        }

        await using (var elsewhere = await StartAsync(new() { ["DATA_PROTECTION_KEYS_DIR"] = Path.Combine(_root.FullName, "other-keys") }))
        {
            using var sameBrowser = new Operator(elsewhere);
            sameBrowser.Cookies[SignInCookie] = cookie;
            using var page = await sameBrowser.GetAsync("/");
            Assert.Equal(HttpStatusCode.Redirect, page.StatusCode);
            Assert.Contains("/login", page.Headers.Location?.OriginalString);
        }
    }

    [Fact]
    public async Task The_keys_folder_is_created_for_the_owner_alone_and_holds_the_key()
    {
        var keys = Path.Combine(_root.FullName, "nested", "keys");
        await using var admin = await StartAsync(new() { ["DATA_PROTECTION_KEYS_DIR"] = keys });
        using var operatorClient = new Operator(admin);
        using var signIn = await operatorClient.SignInAsync(AdminBrowser.Password);
        Assert.Equal("/", signIn.Headers.Location?.OriginalString);

        var key = Assert.Single(Directory.GetFiles(keys));
        Assert.EndsWith(".xml", key);
        Assert.Contains("<key ", await File.ReadAllTextAsync(key));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(keys));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        }
    }

    [Fact]
    public async Task Without_a_keys_folder_the_app_warns_once_that_sign_ins_do_not_survive_a_restart()
    {
        var logs = new LogCapture();
        await using (var admin = await StartAsync(new() { ["DATA_PROTECTION_KEYS_DIR"] = "" }, logs))
        {
            Assert.Single(logs.Lines, l => l.StartsWith("Warning", StringComparison.Ordinal) && l.Contains("DATA_PROTECTION_KEYS_DIR") && l.Contains("restart"));
        }
        var withFolder = new LogCapture();
        await using (var admin = await StartAsync(new() { ["DATA_PROTECTION_KEYS_DIR"] = Path.Combine(_root.FullName, "keys") }, withFolder))
        {
            Assert.DoesNotContain(withFolder.Lines, l => l.Contains("DATA_PROTECTION_KEYS_DIR"));
        }
    }

    [Fact]
    public void A_keys_folder_that_cannot_be_created_or_written_refuses_the_start()
    {
        var file = Path.Combine(_root.FullName, "a-file");
        File.WriteAllText(file, "in the way");
        var unusable = new List<string> { file, Path.Combine(file, "keys") };
        if (OperatingSystem.IsLinux())
        {
            // Exists, but no one (root included) may create files in it: a read-only path.
            unusable.Add("/proc/self");
        }
        foreach (var path in unusable)
        {
            var refused = Assert.Throws<AdminConfigurationException>(() => Build(new() { ["DATA_PROTECTION_KEYS_DIR"] = path }));
            Assert.StartsWith("DATA_PROTECTION_KEYS_DIR", refused.Message);
            Assert.Contains(path, refused.Message);
        }
        Assert.Equal("in the way", File.ReadAllText(file));
    }

    [Fact]
    public async Task With_secure_cookies_the_sign_in_and_antiforgery_cookies_are_secure_even_over_http()
    {
        await using var admin = await StartAsync(new() { ["ADMIN_SECURE_COOKIES"] = "true" });
        using var operatorClient = new Operator(admin);
        using var signIn = await operatorClient.SignInAsync(AdminBrowser.Password);

        // The app sees http (the ingress ended TLS), and still accepts the form and signs in.
        Assert.Equal("/", signIn.Headers.Location?.OriginalString);
        Assert.True(IsSecure(operatorClient.SetCookie(SignInCookie)));
        Assert.True(IsSecure(operatorClient.SetCookie(".AspNetCore.Antiforgery.")));
        using var page = await operatorClient.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
    }

    [Fact]
    public async Task Without_secure_cookies_a_sign_in_over_http_gets_cookies_that_are_not_secure()
    {
        await using var admin = await StartAsync(new() { ["ADMIN_SECURE_COOKIES"] = "false" });
        using var operatorClient = new Operator(admin);
        using var signIn = await operatorClient.SignInAsync(AdminBrowser.Password);
        Assert.Equal("/", signIn.Headers.Location?.OriginalString);
        Assert.False(IsSecure(operatorClient.SetCookie(SignInCookie)));
        Assert.False(IsSecure(operatorClient.SetCookie(".AspNetCore.Antiforgery.")));
    }

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("127.0.0.0/8, 10.0.0.0/8", true)]
    [InlineData("", false)]
    [InlineData("10.0.0.0/8", false)]
    public async Task Forwarded_https_makes_the_sign_in_cookie_secure_only_from_a_trusted_proxy(string trustedProxies, bool believed)
    {
        await using var admin = await StartAsync(new() { ["TRUSTED_PROXIES"] = trustedProxies, ["ADMIN_SECURE_COOKIES"] = "false" });
        using var operatorClient = new Operator(admin);
        operatorClient.Headers["X-Forwarded-Proto"] = "https";
        using var signIn = await operatorClient.SignInAsync(AdminBrowser.Password);
        Assert.Equal("/", signIn.Headers.Location?.OriginalString);
        Assert.Equal(believed, IsSecure(operatorClient.SetCookie(SignInCookie)));
    }

    [Fact]
    public async Task An_untrusted_peer_cannot_dodge_the_login_lockout_with_x_forwarded_for()
    {
        await using var admin = await StartAsync(new() { ["TRUSTED_PROXIES"] = "" });
        using var attacker = new Operator(admin);
        for (var i = 0; i < ClaudeProxy.Admin.Auth.LoginThrottle.MaxFailures; i++)
        {
            attacker.Headers["X-Forwarded-For"] = $"203.0.113.{i + 1}";
            using var failed = await attacker.SignInAsync("wrong-" + i);
            Assert.StartsWith("/login?error=", failed.Headers.Location?.OriginalString);
        }
        attacker.Headers["X-Forwarded-For"] = "198.51.100.7";
        using var locked = await attacker.SignInAsync(AdminBrowser.Password);
        Assert.Equal("/login?error=locked", locked.Headers.Location?.OriginalString);
        Assert.Null(attacker.SetCookie(SignInCookie));
    }

    [Fact]
    public async Task Behind_a_trusted_proxy_the_lockout_counts_the_client_the_proxy_saw()
    {
        await using var admin = await StartAsync(new() { ["TRUSTED_PROXIES"] = "127.0.0.1" });
        using var attacker = new Operator(admin);
        attacker.Headers["X-Forwarded-For"] = "203.0.113.5";
        for (var i = 0; i < ClaudeProxy.Admin.Auth.LoginThrottle.MaxFailures; i++)
        {
            using var failed = await attacker.SignInAsync("wrong-" + i);
            Assert.StartsWith("/login?error=", failed.Headers.Location?.OriginalString);
        }

        // The client's own X-Forwarded-For comes first; the proxy appends the address it saw, and that one counts.
        attacker.Headers["X-Forwarded-For"] = "198.51.100.1, 203.0.113.5";
        using (var forged = await attacker.SignInAsync(AdminBrowser.Password))
        {
            Assert.Equal("/login?error=locked", forged.Headers.Location?.OriginalString);
        }

        // Another operator behind the same ingress is not locked out with the attacker.
        using var colleague = new Operator(admin);
        colleague.Headers["X-Forwarded-For"] = "203.0.113.6";
        using var signIn = await colleague.SignInAsync(AdminBrowser.Password);
        Assert.Equal("/", signIn.Headers.Location?.OriginalString);
    }

    [Theory]
    [InlineData("ADMIN_SECURE_COOKIES", "maybe", "ADMIN_SECURE_COOKIES must be true or false")]
    [InlineData("ADMIN_SECURE_COOKIES", "1", "ADMIN_SECURE_COOKIES must be true or false")]
    [InlineData("TRUSTED_PROXIES", "not-a-network", "TRUSTED_PROXIES must be a comma-separated list of networks")]
    [InlineData("TRUSTED_PROXIES", "10.0.0.0/8, 10.0.0.0/33", "TRUSTED_PROXIES must be a comma-separated list of networks")]
    public void A_bad_value_refuses_the_start_naming_the_setting(string name, string value, string message)
    {
        var refused = Assert.Throws<AdminConfigurationException>(() => Build(new() { [name] = value }));
        Assert.StartsWith(message, refused.Message);
    }

    [Fact]
    public async Task The_process_prints_the_refusal_on_one_line_and_exits_with_2()
    {
        var blocked = Path.Combine(_root.FullName, "a-file");
        await File.WriteAllTextAsync(blocked, "in the way");
        var (exitCode, stdout, stderr) = await RunAdminProcessAsync(new Dictionary<string, string>
        {
            ["ADMIN_API_KEY"] = TestSecrets.OperatorKey,
            ["ADMIN_PASSWORD"] = AdminBrowser.Password,
            ["DATA_PROTECTION_KEYS_DIR"] = Path.Combine(blocked, "keys"),
            ["PORT"] = "0",
            ["HOST"] = "127.0.0.1",
        });
        Assert.Equal(2, exitCode);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("claudeproxy-admin: DATA_PROTECTION_KEYS_DIR", line);
        Assert.DoesNotContain("   at ", stdout + stderr);
        Assert.DoesNotContain(TestSecrets.OperatorKey, stdout + stderr);
    }

    private static bool IsSecure(string? setCookie) =>
        setCookie is not null && setCookie.Split(';', StringSplitOptions.TrimEntries).Contains("secure", StringComparer.OrdinalIgnoreCase);

    private static WebApplication Build(Dictionary<string, string?> settings, LogCapture? logs = null) => AdminApp.Build([], b =>
    {
        var all = new Dictionary<string, string?>
        {
            ["ADMIN_API_KEY"] = TestSecrets.OperatorKey,
            ["ADMIN_PASSWORD"] = AdminBrowser.Password,
            // Nothing listens here: these tests never get past a page's shell to the management API.
            ["GATEWAY_MANAGEMENT_URL"] = "http://127.0.0.1:9",
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "",
            ["DATA_PROTECTION_KEYS_DIR"] = "",
            ["ADMIN_SECURE_COOKIES"] = "",
            ["TRUSTED_PROXIES"] = "",
        };
        foreach (var (k, v) in settings)
        {
            all[k] = v;
        }
        b.Configuration.AddInMemoryCollection(all);
        b.WebHost.UseUrls("http://127.0.0.1:0");
        if (logs is not null)
        {
            b.Logging.AddProvider(logs);
        }
    });

    private static async Task<WebApplication> StartAsync(Dictionary<string, string?> settings, LogCapture? logs = null)
    {
        var app = Build(settings, logs);
        await app.StartAsync().WaitAsync(Timeout);
        return app;
    }

    private static async Task<(int ExitCode, string StdOut, string StdErr)> RunAdminProcessAsync(IDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ClaudeProxy.Admin.dll"));
        start.Environment.Clear();
        start.Environment["PATH"] = Environment.GetEnvironmentVariable("PATH");
        start.Environment["HOME"] = Environment.GetEnvironmentVariable("HOME") ?? "/tmp";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (k, v) in environment)
        {
            start.Environment[k] = v;
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            // It started instead of refusing: stop it, and let the test fail on what it printed.
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().WaitAsync(Timeout);
        }
        return (process.ExitCode, await stdout, await stderr);
    }

    [GeneratedRegex("""<input[^>]*name="__RequestVerificationToken"[^>]*>""")]
    private static partial Regex AntiforgeryInput();

    [GeneratedRegex("value=\"([^\"]+)\"")]
    private static partial Regex ValueAttribute();

    /// <summary>
    /// A browser reduced to what signing in needs: it keeps cookies by hand (a CookieContainer would not send a Secure
    /// cookie over http, which is exactly what the app sees behind the ingress), sends extra headers on every request,
    /// and follows no redirects so each answer can be read.
    /// </summary>
    private sealed class Operator : IDisposable
    {
        private readonly HttpClient _client;
        private readonly List<string> _setCookies = [];

        public Operator(WebApplication admin)
        {
            _client = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false })
            {
                BaseAddress = new Uri(admin.Urls.First()),
                Timeout = Timeout,
            };
        }

        public Dictionary<string, string> Cookies { get; } = [];

        public Dictionary<string, string> Headers { get; } = [];

        /// <summary>The last Set-Cookie this client was sent for a cookie whose name starts with <paramref name="name"/>.</summary>
        public string? SetCookie(string name) => _setCookies.LastOrDefault(c => c.StartsWith(name, StringComparison.Ordinal));

        public string Cookie(string name) => Cookies[name];

        public Task<HttpResponseMessage> GetAsync(string path) => SendAsync(new HttpRequestMessage(HttpMethod.Get, path));

        /// <summary>Opens the sign-in page and posts its form, antiforgery field included, as the browser would.</summary>
        public async Task<HttpResponseMessage> SignInAsync(string password)
        {
            using var login = await GetAsync("/login");
            Assert.Equal(HttpStatusCode.OK, login.StatusCode);
            var input = AntiforgeryInput().Match(await login.Content.ReadAsStringAsync());
            Assert.True(input.Success, "the sign-in page has no antiforgery field");
            var token = WebUtility.HtmlDecode(ValueAttribute().Match(input.Value).Groups[1].Value);
            return await SendAsync(new HttpRequestMessage(HttpMethod.Post, "/account/login")
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string>
                {
                    ["__RequestVerificationToken"] = token,
                    ["username"] = "admin",
                    ["password"] = password,
                    ["returnUrl"] = "",
                }),
            });
        }

        private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request)
        {
            using (request)
            {
                foreach (var (k, v) in Headers)
                {
                    request.Headers.TryAddWithoutValidation(k, v);
                }
                if (Cookies.Count > 0)
                {
                    request.Headers.TryAddWithoutValidation("Cookie", string.Join("; ", Cookies.Select(c => $"{c.Key}={c.Value}")));
                }
                var response = await _client.SendAsync(request).WaitAsync(Timeout);
                foreach (var setCookie in response.Headers.TryGetValues("Set-Cookie", out var values) ? values : [])
                {
                    _setCookies.Add(setCookie);
                    var pair = setCookie.Split(';', 2)[0].Split('=', 2);
                    Cookies[pair[0]] = pair[1];
                }
                return response;
            }
        }

        public void Dispose() => _client.Dispose();
    }
}
