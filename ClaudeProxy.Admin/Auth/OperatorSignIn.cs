using System.Net;
using System.Security.Claims;
using System.Text.Json;
using ClaudeProxy.Settings;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Mvc;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Admin.Auth;

/// <summary>Operators' sign-in with the company's OpenID Connect provider: who may sign in and how the provider is named on the login page.</summary>
public sealed class OperatorSignInOptions
{
    public required Uri Authority { get; init; }
    public required string ClientId { get; init; }
    public string? ClientSecret { get; init; }
    public required string GroupsClaim { get; init; }
    public required IReadOnlyList<string> Scopes { get; init; }
    /// <summary>Only members of this group sign in.</summary>
    public required string AdminGroup { get; init; }
    /// <summary>The provider's name on the login page's button.</summary>
    public required string DisplayName { get; init; }

    /// <summary>The settings, or null when <c>OIDC_AUTHORITY</c>, <c>OIDC_CLIENT_ID</c> or <c>OIDC_ADMIN_GROUP</c> is unset.</summary>
    public static OperatorSignInOptions? Load(SettingsReader settings)
    {
        if (settings.Text(S.OidcAuthority) is not { } authority)
        {
            return null;
        }
        if (!Uri.TryCreate(authority, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http") ||
            (uri.Scheme == "http" && !IsLoopback(uri)))
        {
            throw new AdminConfigurationException($"{S.OidcAuthority.Name} must be an https URL (http only on a loopback address), not '{authority}'.");
        }
        var clientId = settings.Text(S.OidcClientId)
            ?? throw new AdminConfigurationException($"{S.OidcClientId.Name} is required with {S.OidcAuthority.Name}.");
        if (settings.Text(S.OidcAdminGroup) is not { } group)
        {
            return null;
        }
        // The admin app keeps no session at the provider, so it asks for no refresh token.
        var scopes = settings.List(S.OidcScopes).Where(s => s != OpenIdConnectScope.OfflineAccess).Append(OpenIdConnectScope.OpenId).Distinct().ToList();
        return new OperatorSignInOptions
        {
            Authority = uri, ClientId = clientId, ClientSecret = settings.Text(S.OidcClientSecret), GroupsClaim = settings.Text(S.OidcGroupsClaim)!,
            Scopes = scopes, AdminGroup = group, DisplayName = NameOf(uri),
        };
    }

    internal static bool IsLoopback(Uri uri) => uri.IsLoopback || (IPAddress.TryParse(uri.Host, out var address) && IPAddress.IsLoopback(address));

    private static string NameOf(Uri authority) => authority.Host switch
    {
        // A provider on this machine is the development one that the AppHost and the tests run.
        _ when IsLoopback(authority) => "the development identity provider",
        "login.microsoftonline.com" or "sts.windows.net" => "Microsoft",
        "accounts.google.com" => "Google",
        var h when h.EndsWith(".okta.com", StringComparison.OrdinalIgnoreCase) => "Okta",
        var h when h.EndsWith(".auth0.com", StringComparison.OrdinalIgnoreCase) => "Auth0",
        var h => h,
    };

    /// <summary>The groups a sign-in names: repeated claims, or one claim holding a JSON array.</summary>
    internal static IEnumerable<string> GroupsOf(ClaimsPrincipal principal, string claimType)
    {
        foreach (var claim in principal.FindAll(claimType))
        {
            if (claim.Value.StartsWith('['))
            {
                string[]? values = null;
                try
                {
                    values = JsonSerializer.Deserialize<string[]>(claim.Value);
                }
                catch (JsonException)
                {
                }
                foreach (var value in values ?? [])
                {
                    yield return value;
                }
            }
            else
            {
                yield return claim.Value;
            }
        }
    }
}

public static class OperatorSignIn
{
    public const string Scheme = OpenIdConnectDefaults.AuthenticationScheme;
    public const string CallbackPath = "/signin-oidc";
    /// <summary>Where the operator's own name lives in the session: the provider's email, else its name, else its subject.</summary>
    private static readonly string[] NameClaims = ["email", "preferred_username", "name", "sub"];

    /// <summary>Adds the OpenID Connect handler (authorization code with PKCE) that signs operators in to the cookie.</summary>
    public static void AddOperatorSignIn(this AuthenticationBuilder authentication, OperatorSignInOptions settings) =>
        authentication.AddOpenIdConnect(Scheme, settings.DisplayName, o =>
        {
            o.Authority = settings.Authority.ToString();
            o.RequireHttpsMetadata = !OperatorSignInOptions.IsLoopback(settings.Authority);
            o.ClientId = settings.ClientId;
            o.ClientSecret = settings.ClientSecret;
            o.ResponseType = OpenIdConnectResponseType.Code;
            // The answer comes back as a top-level GET, so the correlation and nonce cookies can stay SameSite=Lax.
            o.ResponseMode = OpenIdConnectResponseMode.Query;
            o.UsePkce = true;
            o.CallbackPath = CallbackPath;
            o.SignInScheme = CookieAuthenticationDefaults.AuthenticationScheme;
            o.Scope.Clear();
            foreach (var scope in settings.Scopes)
            {
                o.Scope.Add(scope);
            }
            o.MapInboundClaims = false;
            o.GetClaimsFromUserInfoEndpoint = true;
            o.ClaimActions.MapJsonKey(settings.GroupsClaim, settings.GroupsClaim);
            o.SaveTokens = false;
            // ADMIN_SECURE_COOKIES makes these Secure through the cookie policy, like every other cookie of the app.
            o.CorrelationCookie.SameSite = SameSiteMode.Lax;
            o.CorrelationCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            o.NonceCookie.SameSite = SameSiteMode.Lax;
            o.NonceCookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            o.Events.OnTicketReceived = context =>
            {
                var principal = context.Principal!;
                if (!OperatorSignInOptions.GroupsOf(principal, settings.GroupsClaim).Contains(settings.AdminGroup, StringComparer.Ordinal))
                {
                    var who = NameClaims.Select(principal.FindFirstValue).FirstOrDefault(v => !string.IsNullOrEmpty(v)) ?? "someone";
                    context.HttpContext.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(OperatorSignIn))
                        .LogWarning("{Operator} signed in with the identity provider but is not in {Group}: refused", who, settings.AdminGroup);
                    context.HandleResponse();
                    context.Response.Redirect("/not-an-operator");
                    return Task.CompletedTask;
                }
                // The session keeps only who the operator is, not everything the provider said.
                var name = NameClaims.Select(principal.FindFirstValue).First(v => !string.IsNullOrEmpty(v))!;
                context.Principal = new ClaimsPrincipal(new ClaimsIdentity(
                    [new Claim(ClaimTypes.Name, name), new Claim("sign_in", "identity_provider")], CookieAuthenticationDefaults.AuthenticationScheme));
                return Task.CompletedTask;
            };
            o.Events.OnRemoteFailure = context =>
            {
                context.HttpContext.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(OperatorSignIn))
                    .LogWarning("Sign-in with the identity provider failed: {Reason}", context.Failure?.Message);
                context.HandleResponse();
                context.Response.Redirect("/login?error=provider");
                return Task.CompletedTask;
            };
        });

    /// <summary>
    /// <c>POST /account/login/provider</c> sends the operator to the provider. After the callback they land on
    /// <c>/account/signed-in</c>, which moves on with a same-site navigation: the session cookie is SameSite=Strict, so a
    /// browser would not send it on the redirect that follows the provider's cross-site one.
    /// </summary>
    public static void MapOperatorSignIn(this WebApplication app)
    {
        app.MapPost("/account/login/provider", ([FromForm] string? returnUrl) => Results.Challenge(
            new AuthenticationProperties { RedirectUri = "/account/signed-in?returnUrl=" + Uri.EscapeDataString(LocalOrRoot(returnUrl)) }, [Scheme]))
            .AllowAnonymous();
        app.MapGet("/account/signed-in", (string? returnUrl) =>
        {
            var target = WebUtility.HtmlEncode(LocalOrRoot(returnUrl));
            return Results.Content($"""
                <!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}"><title>Signed in</title></head>
                <body><a href="{target}">Continue</a></body></html>
                """, "text/html; charset=utf-8");
        }).AllowAnonymous();
    }

    /// <summary>A path on this site, or <c>/</c>: never another site (<c>//host</c>, <c>/\host</c>) or a scheme.</summary>
    internal static string LocalOrRoot(string? returnUrl) =>
        returnUrl is { Length: > 0 and <= 2048 } r && r.StartsWith('/') && !r.StartsWith("//", StringComparison.Ordinal) && !r.StartsWith("/\\", StringComparison.Ordinal)
            && !r.Any(char.IsControl) ? r : "/";
}
