using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using OpenIddict.EntityFrameworkCore.Models;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ClaudeProxy.DevIdentity;

/// <summary>
/// A development OpenID Connect provider (OpenIddict): test users with groups, one password, clients from
/// configuration, everything in memory and signing keys made at each start. NOT FOR PRODUCTION. Used by its own
/// Program, by the AppHost in run mode, and hosted in-process by the tests.
/// </summary>
public static class DevIdentityApplication
{
    public const string GroupsClaim = "groups";

    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.AddFilter("OpenIddict", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore", LogLevel.Warning);
        builder.AddDefaultHealthChecks();
        configure?.Invoke(builder);

        var options = DevIdentityOptions.Read(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<DevUserDirectory>();
        builder.Services.AddHostedService<ClientRegistration>();

        // Each instance its own store: several providers in one test process share nothing.
        var store = "devidentity-" + Guid.NewGuid().ToString("N");
        builder.Services.AddDbContext<DevIdentityDbContext>(db => db
            .UseInMemoryDatabase(store)
            .ConfigureWarnings(w => w.Ignore(InMemoryEventId.TransactionIgnoredWarning))
            .UseOpenIddict());

        builder.Services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme).AddCookie(cookie =>
        {
            // Named apart from the admin app's: cookies are shared by every port of localhost.
            cookie.Cookie.Name = ".ClaudeProxy.DevIdentity";
            cookie.Cookie.SameSite = SameSiteMode.Lax;
            cookie.LoginPath = IdentityEndpoints.SignInPath;
            cookie.ExpireTimeSpan = TimeSpan.FromHours(8);
        });
        builder.Services.AddAuthorization();
        builder.Services.AddAntiforgery(antiforgery => antiforgery.Cookie.Name = ".ClaudeProxy.DevIdentity.Antiforgery");

        builder.Services.AddOpenIddict()
            .AddCore(core =>
            {
                core.UseEntityFrameworkCore().UseDbContext<DevIdentityDbContext>();
                core.ReplaceApplicationManager<OpenIddictEntityFrameworkCoreApplication, LoopbackRedirectApplicationManager>();
            })
            .AddServer(server =>
            {
                server.SetAuthorizationEndpointUris(IdentityEndpoints.AuthorizationPath.TrimStart('/'))
                    .SetTokenEndpointUris(IdentityEndpoints.TokenPath.TrimStart('/'))
                    .SetUserInfoEndpointUris(IdentityEndpoints.UserInfoPath.TrimStart('/'))
                    .SetEndSessionEndpointUris(IdentityEndpoints.EndSessionPath.TrimStart('/'))
                    .SetJsonWebKeySetEndpointUris(IdentityEndpoints.JwksPath.TrimStart('/'));
                server.AllowAuthorizationCodeFlow().AllowRefreshTokenFlow().RequireProofKeyForCodeExchange();
                // S256 only: "plain" would let a stolen authorization request be redeemed.
                server.Configure(o => o.CodeChallengeMethods.Remove(CodeChallengeMethods.Plain));
                server.RegisterScopes(Scopes.OpenId, Scopes.Email, Scopes.Profile, Scopes.OfflineAccess, GroupsClaim);
                server.RegisterClaims(Claims.Subject, Claims.Email, Claims.EmailVerified, Claims.Name, GroupsClaim);
                server.IgnoreScopePermissions();
                // Keys made at each start, lost at each stop: tokens of an earlier run are simply not valid any more.
                server.AddEphemeralEncryptionKey().AddEphemeralSigningKey().DisableAccessTokenEncryption();
                server.UseAspNetCore()
                    .EnableAuthorizationEndpointPassthrough()
                    .EnableTokenEndpointPassthrough()
                    .EnableUserInfoEndpointPassthrough()
                    .EnableEndSessionEndpointPassthrough()
                    .EnableErrorPassthrough()
                    // Plain http: it listens on loopback, behind nothing.
                    .DisableTransportSecurityRequirement();
            });

        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseAntiforgery();
        app.MapDefaultEndpoints();
        app.MapIdentityEndpoints();
        app.MapDevUsersApi();

        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ClaudeProxy.DevIdentity");
        app.Lifetime.ApplicationStarted.Register(() => logger.LogWarning(
            "Development identity provider at {Urls}: NOT FOR PRODUCTION. Test users {Users} share one password; clients {Clients}",
            string.Join(", ", app.Urls), string.Join(", ", options.Users.Select(u => u.Email)), string.Join(", ", options.Clients.Select(c => c.ClientId))));
        return app;
    }
}
