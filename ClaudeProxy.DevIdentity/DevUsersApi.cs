using System.Net;

namespace ClaudeProxy.DevIdentity;

/// <summary>
/// Turns a user away (and back) without restarting: a disabled user cannot sign in, and their refresh tokens and
/// access tokens are refused. From this machine only.
/// </summary>
public static class DevUsersApi
{
    public static WebApplication MapDevUsersApi(this WebApplication app)
    {
        var users = app.MapGroup("/dev/users").AddEndpointFilter(async (context, next) =>
            context.HttpContext.Connection.RemoteIpAddress is { } remote && IPAddress.IsLoopback(remote.IsIPv4MappedToIPv6 ? remote.MapToIPv4() : remote)
                ? await next(context)
                : Results.Problem("Only from this machine.", statusCode: StatusCodes.Status403Forbidden));
        users.MapGet("/", (DevUserDirectory directory) => directory.Users.Select(u => View(directory, u)));
        users.MapPost("/{username}/disable", (string username, DevUserDirectory directory) => Set(directory, username, disabled: true)).DisableAntiforgery();
        users.MapPost("/{username}/enable", (string username, DevUserDirectory directory) => Set(directory, username, disabled: false)).DisableAntiforgery();
        return app;
    }

    private static IResult Set(DevUserDirectory directory, string username, bool disabled)
    {
        if (directory.Find(username) is not { } user)
        {
            return Results.Problem($"No user \"{username}\".", statusCode: StatusCodes.Status404NotFound);
        }
        if (disabled)
        {
            directory.Disable(user);
        }
        else
        {
            directory.Enable(user);
        }
        return Results.Ok(View(directory, user));
    }

    private static object View(DevUserDirectory directory, DevUser user) => new
    {
        sub = user.Subject, email = user.Email, name = user.Name, groups = user.Groups, status = directory.IsDisabled(user) ? "disabled" : "active",
    };
}
