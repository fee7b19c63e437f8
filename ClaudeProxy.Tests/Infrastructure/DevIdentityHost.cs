using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using ClaudeProxy.DevIdentity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// The development OpenID Connect provider on a free loopback port, in this process: one confidential client that
/// accepts any loopback redirect URI (plus <see cref="StartAsync"/>'s own), the documented test users, and helpers to
/// sign in through its form and to refuse a user.
/// </summary>
public sealed partial class DevIdentityHost : IAsyncDisposable
{
    /// <summary>How long one request may take: a loaded two-core machine signs a token in seconds, not milliseconds.</summary>
    private static readonly TimeSpan Waiting = TimeSpan.FromSeconds(30);
    private readonly WebApplication _app;

    private DevIdentityHost(WebApplication app, LogCapture logs, string clientId, string clientSecret)
    {
        _app = app;
        Logs = logs;
        ClientId = clientId;
        ClientSecret = clientSecret;
        Authority = new Uri(app.Urls.First().TrimEnd('/') + "/");
        Client = new HttpClient { BaseAddress = Authority, Timeout = TimeSpan.FromSeconds(30) };
    }

    /// <summary>The issuer, with its trailing slash, as discovery gives it.</summary>
    public Uri Authority { get; }
    public string ClientId { get; }
    public string ClientSecret { get; }
    public LogCapture Logs { get; }
    /// <summary>A client without cookies, for discovery, the token endpoint and the /dev API.</summary>
    public HttpClient Client { get; }
    public IServiceProvider Services => _app.Services;

    public const string Password = DevIdentityOptions.DefaultPassword;
    public static readonly TestUser Alice = new("alice@example.com", "dev-alice", "Alice Developer", ["engineering"]);
    public static readonly TestUser Bob = new("bob@example.com", "dev-bob", "Bob Operator", ["engineering", "claudeproxy-admins"]);
    public static readonly TestUser Carol = new("carol@example.com", "dev-carol", "Carol Designer", ["design"]);
    public static IReadOnlyList<TestUser> Users { get; } = [Alice, Bob, Carol];

    /// <param name="redirectUris">Registered redirect URIs besides the loopback ones the client accepts anyway.</param>
    /// <param name="allowLoopbackRedirectUris">False: only <paramref name="redirectUris"/> are accepted.</param>
    public static async Task<DevIdentityHost> StartAsync(IEnumerable<string>? redirectUris = null, bool allowLoopbackRedirectUris = true,
        Action<WebApplicationBuilder>? configure = null)
    {
        var clientId = "claudeproxy-test-" + Guid.NewGuid().ToString("N")[..8];
        var clientSecret = Convert.ToHexString(RandomNumberGenerator.GetBytes(24));
        var settings = new Dictionary<string, string?>
        {
            ["DevIdentity:Clients:0:ClientId"] = clientId,
            ["DevIdentity:Clients:0:ClientSecret"] = clientSecret,
            ["DevIdentity:Clients:0:AllowLoopbackRedirectUris"] = allowLoopbackRedirectUris ? "true" : "false",
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "",
        };
        var i = 0;
        foreach (var uri in redirectUris ?? [])
        {
            settings[$"DevIdentity:Clients:0:RedirectUris:{i++}"] = uri;
        }
        var logs = new LogCapture();
        var app = DevIdentityApplication.Build([], builder =>
        {
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Configuration.AddInMemoryCollection(settings);
            builder.Logging.AddProvider(logs);
            configure?.Invoke(builder);
        });
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        return new DevIdentityHost(app, logs, clientId, clientSecret);
    }

    /// <summary>From now on the user cannot sign in and their refresh tokens are refused (invalid_grant).</summary>
    public Task DisableAsync(string email) => SetAsync(email, "disable");

    public Task EnableAsync(string email) => SetAsync(email, "enable");

    private async Task SetAsync(string email, string action)
    {
        using var response = await Client.PostAsync($"dev/users/{Uri.EscapeDataString(email)}/{action}", null).WaitAsync(Waiting);
        response.EnsureSuccessStatusCode();
    }

    /// <summary>A browser: its own cookies, redirects left to the caller.</summary>
    public static HttpClient NewBrowser() =>
        new(new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>An authorization request of the code flow with PKCE (S256), as a client would send it.</summary>
    public Uri AuthorizationUrl(string redirectUri, Pkce pkce, string state, string nonce, string scope = "openid profile email offline_access") =>
        new(Authority, "connect/authorize" + QueryString(new()
        {
            ["client_id"] = ClientId, ["response_type"] = "code", ["response_mode"] = "query", ["redirect_uri"] = redirectUri, ["scope"] = scope,
            ["state"] = state, ["nonce"] = nonce, ["code_challenge"] = pkce.Challenge, ["code_challenge_method"] = "S256",
        }));

    /// <summary>
    /// Follows an authorization request through the sign-in form as <paramref name="email"/>, as a browser would,
    /// and returns where the provider finally sends the browser: the client's redirect URI with code and state.
    /// </summary>
    public async Task<Uri> SignInAsync(HttpClient browser, Uri authorizationUrl, string email, string password = Password)
    {
        var location = await RedirectAsync(browser, authorizationUrl);
        if (!location.AbsolutePath.Equals("/account/login", StringComparison.Ordinal) || !SameOrigin(location))
        {
            return location; // already signed in: straight back to the client
        }
        var form = await browser.GetStringAsync(location).WaitAsync(Waiting);
        using var post = await browser.PostAsync(new Uri(Authority, "account/login"), new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["username"] = email, ["password"] = password, ["returnUrl"] = WebUtility.HtmlDecode(ReturnUrl().Match(form).Groups[1].Value),
            ["__RequestVerificationToken"] = AntiforgeryToken(form),
        })).WaitAsync(Waiting);
        if (post.StatusCode != HttpStatusCode.Redirect)
        {
            throw new InvalidOperationException($"the sign-in form answered {(int)post.StatusCode} for {email}");
        }
        return await RedirectAsync(browser, new Uri(Authority, post.Headers.Location!));
    }

    public static string AntiforgeryToken(string page) => WebUtility.HtmlDecode(AntiforgeryField().Match(page).Groups[1].Value);

    private bool SameOrigin(Uri uri) => Uri.Compare(uri, Authority, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0;

    private async Task<Uri> RedirectAsync(HttpClient browser, Uri url)
    {
        using var response = await browser.GetAsync(url).WaitAsync(Waiting);
        if (response.StatusCode != HttpStatusCode.Redirect)
        {
            throw new InvalidOperationException($"{url.AbsolutePath} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}\n"
                + string.Join("\n", Logs.Lines.Where(l => l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal))));
        }
        return new Uri(url, response.Headers.Location!);
    }

    private static string QueryString(Dictionary<string, string?> values) => QueryHelpers.AddQueryString("", values);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _app.StopAsync(cts.Token);
        await _app.DisposeAsync();
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();

    [GeneratedRegex("name=\"returnUrl\"[^>]*value=\"([^\"]*)\"")]
    private static partial Regex ReturnUrl();
}

/// <summary>A documented test user of the development provider.</summary>
public sealed record TestUser(string Email, string Subject, string Name, IReadOnlyList<string> Groups);

/// <summary>A PKCE pair: the verifier the client keeps and its S256 challenge.</summary>
public sealed record Pkce(string Verifier, string Challenge)
{
    public static Pkce Create()
    {
        var verifier = Base64Url(RandomNumberGenerator.GetBytes(32));
        return new Pkce(verifier, Base64Url(SHA256.HashData(Encoding.ASCII.GetBytes(verifier))));
    }

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
