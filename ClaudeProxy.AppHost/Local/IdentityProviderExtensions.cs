namespace ClaudeProxy.AppHost.Local;

/// <summary>
/// The OpenID Connect provider people sign in with, run mode only: the operator's own when OIDC_AUTHORITY is set (an
/// AppHost parameter <c>oidc-authority</c> or the environment variable), otherwise the development provider
/// (ClaudeProxy.DevIdentity, NOT FOR PRODUCTION) as the resource <c>devidentity</c>. When publishing nothing is added:
/// the provider of a deployment is the company's, configured in its overlay.
/// </summary>
public sealed class IdentityProvider
{
    public const string DevClientId = "claudeproxy";
    public const string DevAdminGroup = "claudeproxy-admins";

    private readonly Action<IResourceBuilder<ProjectResource>, bool> _apply;

    private IdentityProvider(Action<IResourceBuilder<ProjectResource>, bool> apply) => _apply = apply;

    /// <summary>Nothing to pass on (publish mode).</summary>
    public static IdentityProvider None { get; } = new((_, _) => { });

    public static IdentityProvider Add(IDistributedApplicationBuilder builder, DataFolderSecrets secrets, int? port)
    {
        if (!builder.ExecutionContext.IsRunMode)
        {
            return None;
        }
        var config = builder.Configuration;
        string? Configured(string parameter, string variable) =>
            config[$"Parameters:{parameter}"] is { Length: > 0 } p ? p : config[variable] is { Length: > 0 } v ? v : null;

        if (Configured("oidc-authority", "OIDC_AUTHORITY") is { } authority)
        {
            var clientId = Configured("oidc-client-id", "OIDC_CLIENT_ID");
            var secret = Configured("oidc-client-secret", "OIDC_CLIENT_SECRET") is { } configuredSecret
                ? builder.AddParameter("oidc-client-secret", configuredSecret, secret: true).WithDescription("the client secret registered at the provider")
                : null;
            var adminGroup = Configured("oidc-admin-group", "OIDC_ADMIN_GROUP");
            return new IdentityProvider((project, admin) =>
            {
                project.WithEnvironment("OIDC_AUTHORITY", authority);
                if (clientId is not null)
                {
                    project.WithEnvironment("OIDC_CLIENT_ID", clientId);
                }
                if (secret is not null)
                {
                    project.WithEnvironment("OIDC_CLIENT_SECRET", secret);
                }
                if (admin && adminGroup is not null)
                {
                    project.WithEnvironment("OIDC_ADMIN_GROUP", adminGroup);
                }
            });
        }

        var clientSecret = builder.AddSecret(secrets, "devidentity-client-secret", "the development identity provider's client secret");
        // One confidential client for the gateway ({gateway}/oauth/callback) and the admin app ({admin}/signin-oidc,
        // post-logout {admin}/): everything here listens on loopback, so the provider accepts any loopback redirect URI.
        var devIdentity = builder.AddProject<Projects.ClaudeProxy_DevIdentity>("devidentity")
            .WithHttpEndpoint(port: port, name: "http")
            .WithHttpHealthCheck("/readyz")
            .WithEnvironment("DevIdentity__Clients__0__ClientId", DevClientId)
            .WithEnvironment("DevIdentity__Clients__0__ClientSecret", clientSecret)
            .WithEnvironment("DevIdentity__Clients__0__AllowLoopbackRedirectUris", "true");
        var endpoint = devIdentity.GetEndpoint("http");
        return new IdentityProvider((project, admin) =>
        {
            project.WithEnvironment("OIDC_AUTHORITY", endpoint)
                .WithEnvironment("OIDC_CLIENT_ID", DevClientId)
                .WithEnvironment("OIDC_CLIENT_SECRET", clientSecret)
                .WaitFor(devIdentity);
            if (admin)
            {
                project.WithEnvironment("OIDC_ADMIN_GROUP", DevAdminGroup);
            }
        });
    }

    /// <summary>The gateway's sign-in settings.</summary>
    public IResourceBuilder<ProjectResource> ForGateway(IResourceBuilder<ProjectResource> gateway)
    {
        _apply(gateway, false);
        return gateway;
    }

    /// <summary>The admin app's: the same, and the group whose members sign in as operators.</summary>
    public IResourceBuilder<ProjectResource> ForAdmin(IResourceBuilder<ProjectResource> admin)
    {
        _apply(admin, true);
        return admin;
    }
}

public static class IdentityProviderExtensions
{
    public static IdentityProvider AddIdentityProvider(this IDistributedApplicationBuilder builder, DataFolderSecrets secrets, int? port) =>
        IdentityProvider.Add(builder, secrets, port);

    public static IResourceBuilder<ProjectResource> WithIdentityProvider(this IResourceBuilder<ProjectResource> project, IdentityProvider provider, bool admin = false) =>
        admin ? provider.ForAdmin(project) : provider.ForGateway(project);
}
