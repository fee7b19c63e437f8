using System.Net;
using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Tests.Infrastructure;
using ClaudeProxy.Tests.Management;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>Operators sign in to the admin app with the development identity provider, in Debian's Chromium.</summary>
public sealed class OperatorSignInBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private const string OperatorGroup = "claudeproxy-admins";
    private DevIdentityHost _idp = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _idp = await DevIdentityHost.StartAsync();
        _gateway = await AdminBrowser.GatewayAsync(fx, await fx.Postgres.CreateDatabaseAsync());
    }

    public Task DisposeAsync() => _idp.DisposeAsync().AsTask();

    private Task<AdminBrowser> AdminAsync(bool passwordLogin) => AdminBrowser.StartAsync(_gateway, s =>
    {
        s["OIDC_AUTHORITY"] = _idp.Authority.ToString();
        s["OIDC_CLIENT_ID"] = _idp.ClientId;
        s["OIDC_CLIENT_SECRET"] = _idp.ClientSecret;
        s["OIDC_ADMIN_GROUP"] = OperatorGroup;
        if (!passwordLogin)
        {
            s["ADMIN_PASSWORD_LOGIN"] = "false";
            s["ADMIN_PASSWORD"] = null;
        }
    });

    /// <summary>Opens <paramref name="path"/>, is sent to the login page, chooses the provider and signs in there as <paramref name="email"/>.</summary>
    private async Task<IPage> ProviderSignInAsync(AdminBrowser admin, string email, string path)
    {
        var page = await admin.Browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
        await page.GotoAsync(admin.Url + path);
        await page.WaitForURLAsync("**/login**");
        await page.Locator("[data-testid=provider-login] button").ClickAsync();
        await page.WaitForURLAsync(url => url.StartsWith(_idp.Authority.ToString(), StringComparison.Ordinal));
        await page.FillAsync("input[name=username]", email);
        await page.FillAsync("input[name=password]", DevIdentityHost.Password);
        await page.ClickAsync("button[type=submit]");
        return page;
    }

    [Fact]
    public async Task A_member_of_the_operator_group_signs_in_with_the_provider_and_the_audit_trail_names_them()
    {
        await using var admin = await AdminAsync(passwordLogin: false);
        var person = await UsersApiTests.PersonAsync(_gateway, "leaver@acme.example", "Lee Leaver", ["engineering"]);

        var login = await admin.Browser.NewPageAsync();
        await login.GotoAsync(admin.Url + "/login");
        await Assertions.Expect(login.Locator("[data-testid=provider-login] button")).ToHaveTextAsync("Sign in with the development identity provider");
        await Assertions.Expect(login.Locator("input[name=password]")).ToHaveCountAsync(0);
        await AdminBrowser.ShotAsync(login, "login-provider");

        var page = await ProviderSignInAsync(admin, DevIdentityHost.Bob.Email, "/users");
        await page.WaitForURLAsync(admin.Url + "/users", new PageWaitForURLOptions { WaitUntil = WaitUntilState.DOMContentLoaded, Timeout = 60_000 });
        await Assertions.Expect(page.Locator(".mud-appbar")).ToContainTextAsync(DevIdentityHost.Bob.Email);
        var row = page.Locator("tr", new PageLocatorOptions { HasText = "leaver@acme.example" });
        await row.GetByTestId("deactivate").ClickAsync();
        await page.Locator(".mud-dialog button", new PageLocatorOptions { HasText = "Deactivate" }).ClickAsync();
        await Assertions.Expect(row.GetByTestId("user-status")).ToHaveTextAsync("deactivated");

        await using var db = await _gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();
        var entry = await db.Audit.SingleAsync(a => a.Target == person);
        Assert.Equal(DevIdentityHost.Bob.Email, entry.Actor);
    }

    [Fact]
    public async Task Someone_outside_the_operator_group_sees_why_and_gets_no_session()
    {
        await using var admin = await AdminAsync(passwordLogin: true);
        var page = await ProviderSignInAsync(admin, DevIdentityHost.Alice.Email, "/devices");
        await page.WaitForURLAsync(admin.Url + "/not-an-operator");
        await Assertions.Expect(page.GetByTestId("not-an-operator")).ToContainTextAsync(OperatorGroup);
        await AdminBrowser.ShotAsync(page, "not-an-operator");
        Assert.DoesNotContain(await page.Context.CookiesAsync(), c => c.Name == "claudeproxy.admin");

        await page.GotoAsync(admin.Url + "/devices");
        await page.WaitForURLAsync("**/login**");
        // The password sign-in is still offered beside the provider while ADMIN_PASSWORD_LOGIN is on.
        await Assertions.Expect(page.Locator("input[name=password]")).ToHaveCountAsync(1);
        await Assertions.Expect(page.Locator("[data-testid=provider-login] button")).ToHaveCountAsync(1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_cookies_of_the_way_to_the_provider_follow_ADMIN_SECURE_COOKIES(bool secure)
    {
        await using var admin = await AdminBrowser.StartAsync(_gateway, s =>
        {
            s["OIDC_AUTHORITY"] = _idp.Authority.ToString();
            s["OIDC_CLIENT_ID"] = _idp.ClientId;
            s["OIDC_CLIENT_SECRET"] = _idp.ClientSecret;
            s["OIDC_ADMIN_GROUP"] = OperatorGroup;
            s["ADMIN_SECURE_COOKIES"] = secure ? "true" : "false";
        });
        // Cookies kept by hand: a cookie container would not send a Secure cookie over http.
        using var client = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = new Uri(admin.Url) };
        using var login = await client.GetAsync("/login").WaitAsync(TimeSpan.FromSeconds(30));
        var cookies = string.Join("; ", login.Headers.GetValues("Set-Cookie").Select(c => c.Split(';')[0]));
        var input = Regex.Match(await login.Content.ReadAsStringAsync(), "<input[^>]*__RequestVerificationToken[^>]*>").Value;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/account/login/provider")
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["__RequestVerificationToken"] = WebUtility.HtmlDecode(Regex.Match(input, "value=\"([^\"]+)\"").Groups[1].Value), ["returnUrl"] = "/users",
            }),
        };
        request.Headers.Add("Cookie", cookies);
        using var challenge = await client.SendAsync(request).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(HttpStatusCode.Redirect, challenge.StatusCode);
        var location = challenge.Headers.Location!.ToString();
        Assert.StartsWith(_idp.Authority.ToString(), location);
        Assert.Contains("code_challenge_method=S256", location);
        Assert.DoesNotContain("form_post", location); // the code comes back in the query, a top-level GET
        Assert.Contains("redirect_uri=" + Uri.EscapeDataString(admin.Url + "/signin-oidc"), location);
        var set = challenge.Headers.GetValues("Set-Cookie").Where(c => c.StartsWith(".AspNetCore.", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, set.Count); // correlation and nonce
        Assert.All(set, c =>
        {
            var attributes = c.Split(';', StringSplitOptions.TrimEntries).Skip(1).ToList();
            Assert.Contains("samesite=lax", attributes, StringComparer.OrdinalIgnoreCase);
            Assert.Contains("httponly", attributes, StringComparer.OrdinalIgnoreCase);
            Assert.Equal(secure, attributes.Contains("secure", StringComparer.OrdinalIgnoreCase));
        });
    }
}
