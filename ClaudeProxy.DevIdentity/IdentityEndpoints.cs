using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Primitives;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace ClaudeProxy.DevIdentity;

/// <summary>
/// The provider's own side of the OpenID Connect endpoints (OpenIddict validates the requests and writes the answers)
/// and the sign-in form. A person is signed in to the provider by a cookie; no consent is asked.
/// </summary>
public static class IdentityEndpoints
{
    public const string AuthorizationPath = "/connect/authorize", TokenPath = "/connect/token", UserInfoPath = "/connect/userinfo",
        EndSessionPath = "/connect/logout", JwksPath = "/.well-known/jwks", SignInPath = "/account/login";

    public const string CookieScheme = CookieAuthenticationDefaults.AuthenticationScheme;
    private const string OpenIddictScheme = OpenIddictServerAspNetCoreDefaults.AuthenticationScheme;

    public static WebApplication MapIdentityEndpoints(this WebApplication app)
    {
        app.MapMethods(AuthorizationPath, [HttpMethods.Get, HttpMethods.Post], AuthorizeAsync).DisableAntiforgery();
        app.MapPost(TokenPath, TokenAsync).DisableAntiforgery();
        app.MapMethods(UserInfoPath, [HttpMethods.Get, HttpMethods.Post], UserInfoAsync).DisableAntiforgery();
        app.MapMethods(EndSessionPath, [HttpMethods.Get, HttpMethods.Post], (Delegate)EndSessionAsync).DisableAntiforgery();
        app.MapGet(SignInPath, (HttpContext context, IAntiforgery antiforgery, string? returnUrl) =>
            Pages.SignIn(context, antiforgery, LocalOrRoot(returnUrl), "", null, StatusCodes.Status200OK));
        app.MapPost(SignInPath, SignInAsync);
        app.MapGet("/", (DevUserDirectory directory, DevIdentityOptions options) => Pages.Home(directory, options.Clients));
        return app;
    }

    private static async Task<IResult> AuthorizeAsync(HttpContext context, DevUserDirectory directory)
    {
        if (context.GetOpenIddictServerResponse() is { } refused)
        {
            // A request OpenIddict refused without a redirect URI it may send the error to.
            return Pages.Error(refused.Error ?? Errors.InvalidRequest, refused.ErrorDescription, StatusCodes.Status400BadRequest);
        }
        var request = context.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("not an OpenID Connect request");
        var session = await context.AuthenticateAsync(CookieScheme);
        var user = session.Succeeded ? directory.FindBySubject(session.Principal.FindFirstValue(Claims.Subject)) : null;
        if (user is not null && directory.IsDisabled(user))
        {
            await context.SignOutAsync(CookieScheme);
            user = null;
        }
        if (user is null || request.HasPromptValue(PromptValues.Login))
        {
            if (request.HasPromptValue(PromptValues.None))
            {
                return Refuse(Errors.LoginRequired, "The user is not signed in.");
            }
            // Back here once signed in, without prompt=login so that the sign-in just made counts.
            var parameters = request.GetParameters()
                .Where(p => p.Key != Parameters.Prompt || !request.HasPromptValue(PromptValues.Login))
                .SelectMany(p => ((StringValues)p.Value).Select(v => new KeyValuePair<string, string?>(p.Key, v)));
            var returnUrl = AuthorizationPath + QueryString.Create(parameters);
            return Results.Redirect(SignInPath + QueryString.Create("returnUrl", returnUrl));
        }
        var identity = Identity(user, request.GetScopes());
        return Results.SignIn(new ClaimsPrincipal(identity), authenticationScheme: OpenIddictScheme);
    }

    private static async Task<IResult> TokenAsync(HttpContext context, DevUserDirectory directory)
    {
        var request = context.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("not an OpenID Connect request");
        if (!request.IsAuthorizationCodeGrantType() && !request.IsRefreshTokenGrantType())
        {
            return Refuse(Errors.UnsupportedGrantType, "Only the authorization_code and refresh_token grants are supported.");
        }
        // The code or refresh token, already validated by OpenIddict; the person behind it is looked up again.
        var result = await context.AuthenticateAsync(OpenIddictScheme);
        var user = directory.FindBySubject(result.Principal?.GetClaim(Claims.Subject));
        if (user is null || directory.IsDisabled(user))
        {
            return Refuse(Errors.InvalidGrant, "The user is no longer allowed to sign in.");
        }
        var identity = Identity(user, result.Principal!.GetScopes());
        return Results.SignIn(new ClaimsPrincipal(identity), authenticationScheme: OpenIddictScheme);
    }

    private static async Task<IResult> UserInfoAsync(HttpContext context, DevUserDirectory directory)
    {
        var result = await context.AuthenticateAsync(OpenIddictScheme);
        var user = directory.FindBySubject(result.Principal?.GetClaim(Claims.Subject));
        if (user is null || directory.IsDisabled(user))
        {
            return Results.Challenge(ErrorProperties(Errors.InvalidToken, "The user is no longer allowed to sign in."), [OpenIddictScheme]);
        }
        return Results.Json(new Dictionary<string, object>
        {
            [Claims.Subject] = user.Subject,
            [Claims.Email] = user.Email,
            [Claims.EmailVerified] = true,
            [Claims.Name] = user.Name,
            [DevIdentityApplication.GroupsClaim] = user.Groups,
        });
    }

    private static async Task<IResult> EndSessionAsync(HttpContext context)
    {
        if (context.GetOpenIddictServerResponse() is { } refused)
        {
            return Pages.Error(refused.Error ?? Errors.InvalidRequest, refused.ErrorDescription, StatusCodes.Status400BadRequest);
        }
        await context.SignOutAsync(CookieScheme);
        // To the client's post_logout_redirect_uri when it sent a valid one, else home.
        return Results.SignOut(new AuthenticationProperties { RedirectUri = "/" }, [OpenIddictScheme]);
    }

    private static async Task<IResult> SignInAsync(HttpContext context, IAntiforgery antiforgery, DevUserDirectory directory, ILoggerFactory loggers,
        [FromForm] string? username, [FromForm] string? password, [FromForm] string? returnUrl)
    {
        returnUrl = LocalOrRoot(returnUrl);
        var user = directory.Find(username);
        if (user is null || !directory.PasswordMatches(user, password))
        {
            return Pages.SignIn(context, antiforgery, returnUrl, username ?? "", "Unknown user or wrong password.", StatusCodes.Status401Unauthorized);
        }
        if (directory.IsDisabled(user))
        {
            return Pages.SignIn(context, antiforgery, returnUrl, username ?? "", "This user is disabled.", StatusCodes.Status403Forbidden);
        }
        var identity = new ClaimsIdentity([new Claim(Claims.Subject, user.Subject), new Claim(Claims.Name, user.Name)], CookieScheme);
        await context.SignInAsync(CookieScheme, new ClaimsPrincipal(identity));
        loggers.CreateLogger("ClaudeProxy.DevIdentity").LogInformation("{Email} signed in", user.Email);
        return Results.Redirect(returnUrl);
    }

    /// <summary>What goes into the ID token, the access token and userinfo: the same claims for every scope.</summary>
    private static ClaimsIdentity Identity(DevUser user, IEnumerable<string> scopes)
    {
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, user.Subject)
            .SetClaim(Claims.Email, user.Email)
            .SetClaim(Claims.EmailVerified, true)
            .SetClaim(Claims.Name, user.Name);
        // A JSON array even with one group or none, as providers that send groups do.
        identity.AddClaim(new Claim(DevIdentityApplication.GroupsClaim, JsonSerializer.Serialize(user.Groups), JsonClaimValueTypes.JsonArray));
        identity.SetScopes(scopes);
        identity.SetDestinations(_ => [Destinations.AccessToken, Destinations.IdentityToken]);
        return identity;
    }

    private static IResult Refuse(string error, string description) =>
        Results.Forbid(ErrorProperties(error, description), [OpenIddictScheme]);

    private static AuthenticationProperties ErrorProperties(string error, string description) => new(new Dictionary<string, string?>
    {
        [OpenIddictServerAspNetCoreConstants.Properties.Error] = error,
        [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = description,
    });

    /// <summary>Only a path on this provider: never a redirect elsewhere.</summary>
    private static string LocalOrRoot(string? returnUrl) =>
        returnUrl is { Length: > 0 and < 8192 } && returnUrl[0] == '/' && !returnUrl.StartsWith("//", StringComparison.Ordinal) &&
        !returnUrl.StartsWith("/\\", StringComparison.Ordinal) && !returnUrl.Any(char.IsControl) ? returnUrl : "/";
}
