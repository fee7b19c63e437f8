using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Antiforgery;

namespace ClaudeProxy.DevIdentity;

/// <summary>The few HTML pages the provider renders; every one carries the not-for-production banner.</summary>
public static class Pages
{
    public const string Banner = "DEVELOPMENT IDENTITY PROVIDER: NOT FOR PRODUCTION";

    private static readonly HtmlEncoder Html = HtmlEncoder.Default;

    public static IResult SignIn(HttpContext context, IAntiforgery antiforgery, string returnUrl, string username, string? error, int status)
    {
        var tokens = antiforgery.GetAndStoreTokens(context);
        var body = new StringBuilder()
            .Append("<h1>Sign in</h1>")
            .Append(error is null ? "" : $"<p class=\"error\" role=\"alert\">{Html.Encode(error)}</p>")
            .Append("<form method=\"post\" action=\"/account/login\">")
            .Append($"<input type=\"hidden\" name=\"{Html.Encode(tokens.FormFieldName)}\" value=\"{Html.Encode(tokens.RequestToken ?? "")}\">")
            .Append($"<input type=\"hidden\" name=\"returnUrl\" value=\"{Html.Encode(returnUrl)}\">")
            .Append($"<label>Email <input name=\"username\" autocomplete=\"username\" required value=\"{Html.Encode(username)}\"></label>")
            .Append("<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>")
            .Append("<button type=\"submit\">Sign in</button></form>")
            .Append("<p class=\"hint\">Test users are listed on the <a href=\"/\">home page</a>.</p>");
        return Page("Sign in", body.ToString(), status);
    }

    public static IResult Home(DevUserDirectory directory, IEnumerable<DevClient> clients)
    {
        var body = new StringBuilder()
            .Append("<h1>Development identity provider</h1>")
            .Append("<p>An OpenID Connect provider with test users, for running ClaudeProxy's sign-in on one machine and in tests. ")
            .Append("Discovery: <a href=\"/.well-known/openid-configuration\">/.well-known/openid-configuration</a>.</p>")
            .Append("<table><thead><tr><th>Email</th><th>Name</th><th>sub</th><th>Groups</th><th>Status</th></tr></thead><tbody>");
        foreach (var user in directory.Users)
        {
            body.Append($"<tr><td>{Html.Encode(user.Email)}</td><td>{Html.Encode(user.Name)}</td><td><code>{Html.Encode(user.Subject)}</code></td>")
                .Append($"<td>{Html.Encode(string.Join(", ", user.Groups))}</td><td>{(directory.IsDisabled(user) ? "disabled" : "active")}</td></tr>");
        }
        body.Append("</tbody></table><p>Clients: ")
            .Append(Html.Encode(string.Join(", ", clients.Select(c => c.ClientId))))
            .Append(".</p><p>Refuse a user from this machine: <code>POST /dev/users/{email}/disable</code>, and <code>/enable</code> to undo it.</p>");
        return Page("Development identity provider", body.ToString(), StatusCodes.Status200OK);
    }

    public static IResult Error(string error, string? description, int status) =>
        Page("Sign-in error", $"<h1>The sign-in request was refused</h1><p><code>{Html.Encode(error)}</code></p><p>{Html.Encode(description ?? "")}</p>", status);

    private static IResult Page(string title, string body, int status) => Results.Content(
        $$"""
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="robots" content="noindex"><title>{{Html.Encode(title)}} - {{Banner}}</title>
        <style>
        body { font-family: system-ui, sans-serif; margin: 0; } main { max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
        .banner { background: #b00020; color: #fff; font-weight: bold; padding: .75rem 1rem; text-align: center; }
        label { display: block; margin: .75rem 0; } input { display: block; width: 100%; padding: .4rem; }
        .error { color: #b00020; font-weight: bold; } table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .3rem .6rem; }
        </style></head>
        <body><div class="banner" role="banner">{{Banner}}: test users and a shared password. Never expose it or trust its tokens.</div>
        <main>{{body}}</main></body></html>
        """, "text/html; charset=utf-8", Encoding.UTF8, status);
}
