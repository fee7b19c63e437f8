using ClaudeProxy.Admin.Auth;
using ClaudeProxy.Admin.Components;
using ClaudeProxy.Admin.Gateway;
using Microsoft.AspNetCore.Authentication.Cookies;
using MudBlazor.Services;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Admin;

/// <summary>The admin app: Blazor Server with MudBlazor, signed in with a cookie, talking to the gateway's management API only.</summary>
public static class AdminApp
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
            // Named explicitly so the static web assets manifest is found when a test host runs the app in-process.
            ApplicationName = typeof(AdminApp).Assembly.GetName().Name,
        });
        // Serves MudBlazor's assets from the build output in every environment, not only Development.
        builder.WebHost.UseStaticWebAssets();
        configure?.Invoke(builder);
        var options = AdminOptions.Load(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.AddKeyStorage(options);
        builder.AddIngressSettings(options);
        var settings = builder.Configuration.Settings();
        if (settings.Text(S.AdminPort) is { } port && string.IsNullOrEmpty(settings.Raw(S.Urls)) && string.IsNullOrEmpty(settings.Raw(S.AspNetCoreUrls)))
        {
            builder.WebHost.UseUrls($"http://{settings.Raw(S.Host) ?? S.Host.Default}:{port}");
        }
        builder.WebHost.ConfigureKestrel(k => k.AddServerHeader = false);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.AddServiceDefaults();

        builder.Services.AddRazorComponents().AddInteractiveServerComponents();
        builder.Services.AddMudServices();
        builder.Services.AddCascadingAuthenticationState();
        var authentication = builder.Services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme);
        if (options.IdentityProvider is { } identityProvider)
        {
            authentication.AddOperatorSignIn(identityProvider);
        }
        authentication.AddCookie(cookie =>
        {
            cookie.LoginPath = "/login";
            cookie.Cookie.Name = "claudeproxy.admin";
            cookie.Cookie.HttpOnly = true;
            cookie.Cookie.SameSite = SameSiteMode.Strict;
            cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            cookie.ExpireTimeSpan = TimeSpan.FromHours(8);
            cookie.SlidingExpiration = true;
        });
        builder.Services.AddAuthorizationBuilder().SetFallbackPolicy(new Microsoft.AspNetCore.Authorization.AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build());
        builder.Services.AddSingleton<LoginThrottle>();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddTransient<OperatorKeyHandler>();
        builder.Services.AddHttpClient<ManagementClient>(client => client.BaseAddress = new Uri(options.ManagementUrl))
            .AddHttpMessageHandler<OperatorKeyHandler>();

        var app = builder.Build();
        app.UseIngressSettings(options);
        app.UseExceptionHandler("/error", createScopeForErrors: true);
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseAntiforgery();
        app.MapDefaultEndpoints();
        app.MapStaticAssets().AllowAnonymous();
        app.MapAccountEndpoints();
        if (options.IdentityProvider is not null)
        {
            app.MapOperatorSignIn();
        }
        app.MapExportEndpoints();
        app.MapRazorComponents<App>().AddInteractiveServerRenderMode();
        return app;
    }
}
