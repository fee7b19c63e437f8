using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Limits;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;

namespace ClaudeProxy.Gateway.SignIn;

/// <summary>
/// The browser leg of the sign-in. <c>GET /device</c> shows the code (prefilled from the link Claude Code opened)
/// and never submits by itself; <c>POST /device</c> sends the person to the identity provider (authorization code
/// with PKCE, state and nonce; the OpenID Connect handler's correlation cookie binds this browser to the one that
/// comes back to <c>/oauth/callback</c>); <c>POST /device/deny</c> refuses the code. Both posts are refused from
/// another site (<c>Sec-Fetch-Site</c>, <c>Origin</c>) and without the form token bound to this browser's cookie.
/// </summary>
public static partial class VerificationPage
{
    public const string Path = "/device";
    public const string DenyPath = "/device/deny";
    public const string UserCodeItem = "claudeproxy.user_code";
    private const string BrowserCookie = "claudeproxy_device";

    public static IEndpointRouteBuilder MapVerificationPage(this IEndpointRouteBuilder app)
    {
        app.MapGet(Path, Show);
        app.MapPost(Path, Continue);
        app.MapPost(DenyPath, Deny);
        return app;
    }

    private static async Task Show(HttpContext context, SignInStore store, SecretDataProtection protection, TimeProvider time)
    {
        var typed = context.Request.Query["user_code"].Count == 1 ? context.Request.Query["user_code"][0] : null;
        var code = SignInCodes.NormalizeUserCode(typed);
        var waiting = code is null ? null : await store.FindPendingAsync(code, context.RequestAborted);
        string? details = null;
        if (waiting is not null)
        {
            var minutes = Math.Max(0, (int)Math.Ceiling((waiting.ExpiresAt - time.GetUtcNow()).TotalMinutes));
            details = $"Asked for at {waiting.CreatedAt.UtcDateTime.ToString("HH:mm", CultureInfo.InvariantCulture)} UTC" +
                (waiting.ClientAddress is { } address ? $" from {address}" : "") + $"; it expires in {minutes} minute{(minutes == 1 ? "" : "s")}.";
        }
        var message = typed is not null && waiting is null ? "This code is unknown or has expired: start the sign-in again in Claude Code." : null;
        await WriteFormAsync(context, protection, 200, waiting is null ? typed : SignInCodes.Display(waiting.UserCode), details, message);
    }

    private static async Task Continue(HttpContext context, SignInStore store, SignInOptions options, SecretDataProtection protection,
        GatewayOptions gateway, AdmissionService limits)
    {
        if (await CheckPostAsync(context, options, protection, gateway, limits) is not { } code)
        {
            return;
        }
        if (await store.FindPendingAsync(code, context.RequestAborted) is null)
        {
            await WriteFormAsync(context, protection, 400, SignInCodes.Display(code), null,
                "This code is unknown or has expired: start the sign-in again in Claude Code.");
            return;
        }
        var properties = new AuthenticationProperties();
        properties.Items[UserCodeItem] = code;
        try
        {
            await context.ChallengeAsync(SignInOptions.Scheme, properties);
        }
        catch (InvalidOperationException e) when (!context.RequestAborted.IsCancellationRequested)
        {
            // The provider's discovery document could not be read (the handler retries it at the next sign-in).
            LogProviderUnreachable(context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(VerificationPage)), e.GetType().Name);
            context.Response.Clear();
            await WriteResultAsync(context, 503, "Sign-in unavailable",
                "The company's sign-in page cannot be reached right now. Try again in a moment; the code stays valid until it expires.");
        }
    }

    private static async Task Deny(HttpContext context, SignInStore store, SignInOptions options, SecretDataProtection protection,
        GatewayOptions gateway, AdmissionService limits)
    {
        if (await CheckPostAsync(context, options, protection, gateway, limits) is not { } code)
        {
            return;
        }
        var denied = await store.DenyAsync(code, context.RequestAborted);
        await WriteResultAsync(context, denied ? 200 : 400, denied ? "Sign-in refused" : "Nothing to refuse",
            denied ? "Claude Code will not be signed in with this code. You can close this tab." : "This code is unknown or has expired.");
    }

    /// <summary>
    /// The checks both posts share: same site, the browser's form token, the address's budget and a well-formed code.
    /// Returns the normalised code, or null after writing the refusal.
    /// </summary>
    private static async Task<string?> CheckPostAsync(HttpContext context, SignInOptions options, SecretDataProtection protection, GatewayOptions gateway,
        AdmissionService limits)
    {
        var request = context.Request;
        var site = request.Headers["Sec-Fetch-Site"].ToString();
        var origin = request.Headers.Origin.ToString();
        if (site is { Length: > 0 } && site != "same-origin" && site != "none" || origin is { Length: > 0 } && !IsOwnOrigin(context, gateway, origin))
        {
            await WriteResultAsync(context, 403, "Refused", "This form can only be sent from the gateway's own page. Open the link Claude Code showed you.");
            return null;
        }
        if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = 4096;
        }
        if (!request.HasFormContentType || request.ContentLength > 4096)
        {
            await WriteResultAsync(context, 400, "Refused", "The form could not be read.");
            return null;
        }
        IFormCollection form;
        try
        {
            form = await request.ReadFormAsync(context.RequestAborted);
        }
        catch (Exception e) when (e is InvalidDataException or BadHttpRequestException or IOException && !context.RequestAborted.IsCancellationRequested)
        {
            await WriteResultAsync(context, 400, "Refused", "The form could not be read.");
            return null;
        }
        var cookie = request.Cookies[BrowserCookie];
        var sent = form["csrf"].Count == 1 ? form["csrf"][0] : null;
        if (cookie is not { Length: > 0 } || sent is null || !CryptographicEquals(protection.Mac(cookie), sent))
        {
            await WriteResultAsync(context, 403, "Refused", "This page has expired or was not opened in this browser. Open the link Claude Code showed you again.");
            return null;
        }
        var address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var decision = await limits.AcquireAsync("signin:page:" + address, options.RateLimit, TimeSpan.FromMinutes(1), context.RequestAborted);
        if (decision is not { Allowed: true })
        {
            await WriteResultAsync(context, decision is null ? 503 : 429, "Too many attempts", "Wait a minute before trying again.");
            return null;
        }
        var code = SignInCodes.NormalizeUserCode(form["user_code"].Count == 1 ? form["user_code"][0] : null);
        if (code is null)
        {
            await WriteFormAsync(context, protection, 400, null, null, "Type the eight letters Claude Code shows (for example BCDF-GHJK).");
            return null;
        }
        return code;
    }

    private static bool IsOwnOrigin(HttpContext context, GatewayOptions gateway, string origin)
    {
        if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri))
        {
            return false;
        }
        var own = $"{uri.Scheme}://{uri.Authority}";
        return string.Equals(own, $"{context.Request.Scheme}://{context.Request.Host}", StringComparison.OrdinalIgnoreCase)
            || gateway.ProxyBaseUrl is { } configured && Uri.TryCreate(configured, UriKind.Absolute, out var public_)
                && string.Equals(own, $"{public_.Scheme}://{public_.Authority}", StringComparison.OrdinalIgnoreCase);
    }

    private static bool CryptographicEquals(string a, string b) =>
        System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));

    /// <summary>The OpenID Connect handler's events: the person is recorded and the code approved when they come back.</summary>
    public static OpenIdConnectEvents Events(SignInOptions options) => new()
    {
        OnRedirectToIdentityProvider = context =>
        {
            if (context.HttpContext.RequestServices.GetRequiredService<GatewayOptions>().ProxyBaseUrl is { } publicBase)
            {
                // Behind an ingress the request's own host may not be the one the provider knows.
                context.ProtocolMessage.RedirectUri = publicBase + SignInOptions.CallbackPath;
                context.Properties.Items[OpenIdConnectDefaults.RedirectUriForCodePropertiesKey] = context.ProtocolMessage.RedirectUri;
            }
            return Task.CompletedTask;
        },
        OnTicketReceived = async context =>
        {
            context.HandleResponse();
            var http = context.HttpContext;
            var services = http.RequestServices;
            if (context.Properties?.Items.TryGetValue(UserCodeItem, out var code) != true || code is null)
            {
                await WriteResultAsync(http, 400, "Sign-in failed", "This sign-in did not start on this gateway's page. Start again in Claude Code.");
                return;
            }
            var person = IdentityProvider.PersonFrom(context.Principal!, options.GroupsClaim, options.Authority!.ToString().TrimEnd('/'));
            if (person is null)
            {
                await WriteResultAsync(http, 400, "Sign-in failed", "The identity provider did not say who you are (no subject). Ask an operator.");
                return;
            }
            var refresh = context.Properties.GetTokenValue("refresh_token");
            var protectedRefresh = refresh is null ? null : services.GetRequiredService<SecretDataProtection>().ProtectText(refresh);
            var (user, approved) = await services.GetRequiredService<SignInStore>().ApproveAsync(code, person, protectedRefresh, http.RequestAborted);
            if (approved)
            {
                await WriteResultAsync(http, 200, "You are signed in",
                    $"Claude Code is now signed in as {user!.Email ?? user.Name ?? user.Subject}. You can close this tab and return to your terminal.");
            }
            else if (user is not null)
            {
                await WriteResultAsync(http, 403, "Sign-in refused",
                    "Your access to this gateway has been turned off by an operator. Ask them to reactivate it.");
            }
            else
            {
                await WriteResultAsync(http, 400, "Sign-in failed", "This code has expired or was already used. Start the sign-in again in Claude Code.");
            }
        },
        OnRemoteFailure = async context =>
        {
            context.HandleResponse();
            var denied = context.Failure?.Message.Contains("access_denied", StringComparison.Ordinal) == true;
            LogRemoteFailure(context.HttpContext.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(VerificationPage)),
                context.Failure?.GetType().Name ?? "unknown");
            await WriteResultAsync(context.HttpContext, 400, "Sign-in failed", denied
                ? "The identity provider refused the sign-in. Start again in Claude Code."
                : "The sign-in could not be completed (it may have been started in another browser, or taken too long). Start again in Claude Code.");
        },
    };

    [LoggerMessage(Level = LogLevel.Warning, Message = "The identity provider's discovery document could not be read ({Reason}): sign-ins wait for it")]
    private static partial void LogProviderUnreachable(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "A sign-in came back from the identity provider unfinished ({Reason})")]
    private static partial void LogRemoteFailure(ILogger logger, string reason);

    private static Task WriteFormAsync(HttpContext context, SecretDataProtection protection, int status, string? code, string? details, string? message)
    {
        var cookie = context.Request.Cookies[BrowserCookie];
        if (cookie is not { Length: >= 16 and <= 64 })
        {
            cookie = SignInCodes.NewSecret();
            context.Response.Cookies.Append(BrowserCookie, cookie, new CookieOptions
            {
                HttpOnly = true,
                Secure = context.Request.IsHttps,
                SameSite = SameSiteMode.Strict,
                Path = Path,
                MaxAge = TimeSpan.FromHours(1),
            });
        }
        var token = Html(protection.Mac(cookie));
        var body = new StringBuilder();
        body.Append("<h1>Sign in to Claude Code</h1>");
        body.Append("<p>Check that this code is the one Claude Code shows in your terminal, then continue to sign in with your company account.</p>");
        if (message is not null)
        {
            body.Append("<p class=\"error\">").Append(Html(message)).Append("</p>");
        }
        body.Append("<form method=\"post\" action=\"").Append(Path).Append("\">")
            .Append("<label for=\"user_code\">Code</label>")
            .Append("<input id=\"user_code\" name=\"user_code\" autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" maxlength=\"16\" value=\"")
            .Append(Html(code ?? "")).Append("\">")
            .Append("<input type=\"hidden\" name=\"csrf\" value=\"").Append(token).Append("\">")
            .Append("<button type=\"submit\">Continue</button></form>");
        if (details is not null)
        {
            body.Append("<p class=\"details\">").Append(Html(details)).Append("</p>");
            body.Append("<form method=\"post\" action=\"").Append(DenyPath).Append("\">")
                .Append("<input type=\"hidden\" name=\"user_code\" value=\"").Append(Html(code ?? "")).Append("\">")
                .Append("<input type=\"hidden\" name=\"csrf\" value=\"").Append(token).Append("\">")
                .Append("<p>Did not start this sign-in yourself? <button type=\"submit\" class=\"deny\">Deny</button></p></form>");
        }
        return WritePageAsync(context, status, "Sign in to Claude Code", body.ToString());
    }

    private static Task WriteResultAsync(HttpContext context, int status, string title, string text) =>
        WritePageAsync(context, status, title, $"<h1>{Html(title)}</h1><p>{Html(text)}</p>");

    private static async Task WritePageAsync(HttpContext context, int status, string title, string body)
    {
        if (context.Response.HasStarted)
        {
            return;
        }
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "text/html; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        response.Headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";
        response.Headers["X-Frame-Options"] = "DENY";
        // Not no-referrer: under it browsers send the form's post with "Origin: null", which the same-site check refuses.
        response.Headers["Referrer-Policy"] = "same-origin";
        response.Headers["X-Content-Type-Options"] = "nosniff";
        await response.WriteAsync($$"""
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{{Html(title)}} · ClaudeProxy</title><style>
            body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2328}
            input{font:1.5rem monospace;letter-spacing:.2em;text-transform:uppercase;padding:.4rem;width:12rem;display:block;margin:.5rem 0 1rem}
            button{font-size:1rem;padding:.5rem 1.2rem;cursor:pointer}.deny{background:none;border:1px solid #b42318;color:#b42318;padding:.2rem .8rem}
            .error{color:#b42318}.details{color:#57606a;font-size:.9rem}
            </style></head><body>{{body}}</body></html>
            """, context.RequestAborted);
    }

    private static string Html(string text) => HtmlEncoder.Default.Encode(text);
}
