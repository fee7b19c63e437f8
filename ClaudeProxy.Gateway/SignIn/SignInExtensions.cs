using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.SignIn;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;

namespace Microsoft.Extensions.Hosting;

public static class SignInExtensions
{
    /// <summary>
    /// Claude Code's gateway sign-in with the company's OpenID Connect provider, when <c>OIDC_AUTHORITY</c> is set:
    /// the platform's OpenID Connect handler for the browser leg (discovery from the authority, authorization code
    /// with PKCE), the gateway's own tokens for everything after.
    /// </summary>
    public static IHostApplicationBuilder AddSignIn(this IHostApplicationBuilder builder, GatewayOptions gateway)
    {
        var backing = builder.AddBackingServices();
        var options = SignInOptions.Load(builder.Configuration, backing);
        builder.Services.AddSingleton(options);
        if (!options.Enabled)
        {
            return builder;
        }
        var protection = new SecretDataProtection(gateway.JwtSecret, "claudeproxy sign-in");
        builder.Services.AddSingleton(protection);
        builder.Services.AddSingleton<SignInStore>();
        builder.Services.AddSingleton<IdentityProvider>();
        builder.Services.AddAuthentication().AddOpenIdConnect(SignInOptions.Scheme, oidc =>
        {
            oidc.Authority = options.Authority!.ToString();
            oidc.RequireHttpsMetadata = options.Authority.Scheme == Uri.UriSchemeHttps;
            oidc.ClientId = options.ClientId;
            oidc.ClientSecret = options.ClientSecret;
            oidc.ResponseType = OpenIdConnectResponseType.Code;
            // A top-level GET back from the provider: the correlation and nonce cookies can then be SameSite=Lax.
            oidc.ResponseMode = OpenIdConnectResponseMode.Query;
            oidc.UsePkce = true;
            oidc.CallbackPath = SignInOptions.CallbackPath;
            oidc.Scope.Clear();
            foreach (var scope in options.Scopes)
            {
                oidc.Scope.Add(scope);
            }
            oidc.MapInboundClaims = false;
            oidc.GetClaimsFromUserInfoEndpoint = true;
            oidc.ClaimActions.MapJsonKey(options.GroupsClaim, options.GroupsClaim);
            oidc.SaveTokens = true;
            oidc.DataProtectionProvider = protection;
            oidc.BackchannelTimeout = TimeSpan.FromSeconds(10);
            oidc.CorrelationCookie.Name = "claudeproxy.correlation.";
            oidc.CorrelationCookie.SameSite = SameSiteMode.Lax;
            oidc.CorrelationCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            oidc.NonceCookie.Name = "claudeproxy.nonce.";
            oidc.NonceCookie.SameSite = SameSiteMode.Lax;
            oidc.NonceCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            oidc.RemoteAuthenticationTimeout = options.DeviceCodeLifetime;
            oidc.Events = VerificationPage.Events(options);
        });
        return builder;
    }

    /// <summary>
    /// The sign-in's endpoints, when it is configured. Authentication runs only on the callback path: no other request
    /// (above all, none on the request path) pays for it.
    /// </summary>
    public static WebApplication MapSignIn(this WebApplication app)
    {
        if (!app.Services.GetRequiredService<SignInOptions>().Enabled)
        {
            return app;
        }
        // WebApplication would otherwise add authentication for every request once a scheme exists: only the
        // provider's handler, on its callback path, is wanted (and no default scheme is ever authenticated).
        ((IApplicationBuilder)app).Properties["__AuthenticationMiddlewareSet"] = true;
        app.UseWhen(context => context.Request.Path.StartsWithSegments(SignInOptions.CallbackPath), callback => callback.Use(async (context, next) =>
        {
            var handlers = context.RequestServices.GetRequiredService<IAuthenticationHandlerProvider>();
            if (await handlers.GetHandlerAsync(context, SignInOptions.Scheme) is IAuthenticationRequestHandler handler && await handler.HandleRequestAsync())
            {
                return;
            }
            await next(context);
        }));
        app.MapOAuthEndpoints();
        app.MapVerificationPage();
        return app;
    }
}
