using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;

namespace ClaudeProxy.Admin.Auth;

/// <summary>Sign-in and sign-out as form posts (antiforgery-checked), since a cookie cannot be set from a live circuit.</summary>
public static class AccountEndpoints
{
    public static void MapAccountEndpoints(this WebApplication app)
    {
        app.MapPost("/account/login", async (HttpContext context, [FromForm] string? username, [FromForm] string? password, [FromForm] string? returnUrl,
            AdminOptions options, LoginThrottle throttle) =>
        {
            if (options.Password is null)
            {
                return Results.Redirect("/login?error=password-off");
            }
            var address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
            if (throttle.IsLocked(address))
            {
                return Results.Redirect("/login?error=locked");
            }
            if (!string.Equals(username, options.Username, StringComparison.Ordinal) | !options.Password.Verify(password))
            {
                throttle.Failed(address);
                return Results.Redirect(throttle.IsLocked(address) ? "/login?error=locked" : "/login?error=invalid");
            }
            throttle.Succeeded(address);
            var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, options.Username!)], CookieAuthenticationDefaults.AuthenticationScheme);
            await context.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme, new ClaimsPrincipal(identity));
            return Results.LocalRedirect(OperatorSignIn.LocalOrRoot(returnUrl));
        }).AllowAnonymous();

        app.MapPost("/account/logout", async (HttpContext context) =>
        {
            await context.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
            return Results.Redirect("/login");
        });
    }
}
