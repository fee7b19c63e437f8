using System.Net;
using System.Security.Claims;
using ClaudeProxy.Admin;
using ClaudeProxy.Admin.Auth;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Admin;

/// <summary>Operators' sign-in with the company's identity provider: the settings it needs and what the login page offers.</summary>
public sealed class OperatorSignInTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static WebApplication Build(Dictionary<string, string?> settings) => AdminApp.Build([], b =>
    {
        var all = new Dictionary<string, string?>
        {
            ["ADMIN_API_KEY"] = TestSecrets.OperatorKey,
            ["GATEWAY_MANAGEMENT_URL"] = "http://127.0.0.1:9",
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "",
        };
        foreach (var (k, v) in settings)
        {
            all[k] = v;
        }
        b.Configuration.AddInMemoryCollection(all);
        b.WebHost.UseUrls("http://127.0.0.1:0");
    });

    [Theory]
    [InlineData("ADMIN_PASSWORD_LOGIN=false", "ADMIN_PASSWORD_LOGIN=false needs OIDC_AUTHORITY, OIDC_CLIENT_ID and OIDC_ADMIN_GROUP set")]
    [InlineData("ADMIN_PASSWORD_LOGIN=false;OIDC_AUTHORITY=https://idp.example;OIDC_CLIENT_ID=admin",
        "ADMIN_PASSWORD_LOGIN=false needs OIDC_AUTHORITY, OIDC_CLIENT_ID and OIDC_ADMIN_GROUP set")]
    [InlineData("ADMIN_PASSWORD=pw;OIDC_AUTHORITY=https://idp.example;OIDC_ADMIN_GROUP=ops", "OIDC_CLIENT_ID is required with OIDC_AUTHORITY")]
    [InlineData("ADMIN_PASSWORD=pw;OIDC_AUTHORITY=http://idp.example;OIDC_CLIENT_ID=admin;OIDC_ADMIN_GROUP=ops", "OIDC_AUTHORITY must be an https URL")]
    [InlineData("ADMIN_PASSWORD=pw;OIDC_AUTHORITY=idp.example;OIDC_CLIENT_ID=admin;OIDC_ADMIN_GROUP=ops", "OIDC_AUTHORITY must be an https URL")]
    [InlineData("ADMIN_PASSWORD_LOGIN=no", "ADMIN_PASSWORD_LOGIN must be true or false")]
    public void A_sign_in_that_could_not_work_refuses_the_start_naming_the_setting(string settings, string message)
    {
        var values = settings.Split(';').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => (string?)p[1]);
        var refused = Assert.Throws<AdminConfigurationException>(() => Build(values));
        Assert.StartsWith(message, refused.Message);
        Assert.DoesNotContain('\n', refused.Message);
    }

    [Fact]
    public async Task With_the_password_sign_in_off_the_app_starts_without_a_password_and_offers_only_the_provider()
    {
        await using var admin = Build(new()
        {
            ["ADMIN_PASSWORD_LOGIN"] = "false", ["OIDC_AUTHORITY"] = "https://login.microsoftonline.com/acme/v2.0", ["OIDC_CLIENT_ID"] = "claudeproxy-admin",
            ["OIDC_ADMIN_GROUP"] = "claudeproxy-admins",
        });
        await admin.StartAsync().WaitAsync(Timeout);
        using var client = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, CookieContainer = new CookieContainer() })
        {
            BaseAddress = new Uri(admin.Urls.First()), Timeout = Timeout,
        };
        var login = await client.GetStringAsync("/login");
        Assert.Contains("Sign in with Microsoft", login);
        Assert.DoesNotContain("name=\"password\"", login);

        // Posting a password by hand, with a valid antiforgery token, gets no session either.
        var input = System.Text.RegularExpressions.Regex.Match(login, "<input[^>]*__RequestVerificationToken[^>]*>").Value;
        var antiforgery = System.Text.RegularExpressions.Regex.Match(input, "value=\"([^\"]+)\"");
        Assert.True(antiforgery.Success, login);
        using var posted = await client.PostAsync("/account/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__RequestVerificationToken"] = WebUtility.HtmlDecode(antiforgery.Groups[1].Value), ["username"] = "admin", ["password"] = "anything",
        }));
        Assert.Equal("/login?error=password-off", posted.Headers.Location?.OriginalString);
        Assert.DoesNotContain(posted.Headers.TryGetValues("Set-Cookie", out var set) ? set : [], c => c.StartsWith("claudeproxy.admin=", StringComparison.Ordinal));
        using var home = await client.GetAsync("/");
        Assert.Equal(HttpStatusCode.Redirect, home.StatusCode);
        Assert.Contains("/login", home.Headers.Location!.OriginalString);
        await admin.StopAsync();
    }

    [Fact]
    public async Task Without_an_operator_group_the_provider_is_not_offered_and_the_password_sign_in_stays()
    {
        await using var admin = Build(new()
        {
            ["ADMIN_PASSWORD"] = AdminBrowser.Password, ["OIDC_AUTHORITY"] = "https://idp.example", ["OIDC_CLIENT_ID"] = "claudeproxy-admin",
        });
        await admin.StartAsync().WaitAsync(Timeout);
        using var client = new HttpClient { BaseAddress = new Uri(admin.Urls.First()), Timeout = Timeout };
        var login = await client.GetStringAsync("/login");
        Assert.DoesNotContain("Sign in with", login);
        Assert.Contains("name=\"password\"", login);
        await admin.StopAsync();
    }

    [Fact]
    public void Groups_come_as_repeated_claims_or_as_one_json_array()
    {
        var repeated = new ClaimsPrincipal(new ClaimsIdentity([new Claim("groups", "engineering"), new Claim("groups", "claudeproxy-admins")]));
        Assert.Equal(["engineering", "claudeproxy-admins"], OperatorSignInOptions.GroupsOf(repeated, "groups"));
        var array = new ClaimsPrincipal(new ClaimsIdentity([new Claim("roles", """["engineering","claudeproxy-admins"]""")]));
        Assert.Equal(["engineering", "claudeproxy-admins"], OperatorSignInOptions.GroupsOf(array, "roles"));
        var broken = new ClaimsPrincipal(new ClaimsIdentity([new Claim("groups", "[not json"), new Claim("groups", "[1,2]")]));
        Assert.Empty(OperatorSignInOptions.GroupsOf(broken, "groups"));
    }
}
