using System.Net;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Core;
using OpenIddict.EntityFrameworkCore.Models;

namespace ClaudeProxy.DevIdentity;

/// <summary>
/// OpenIddict's application manager, except that a client configured with
/// <see cref="DevClient.AllowLoopbackRedirectUris"/> also accepts redirect and post-logout redirect URIs on a loopback
/// host, whatever their port: tests and <c>aspire run</c> learn their ports only once started.
/// </summary>
public sealed class LoopbackRedirectApplicationManager(
    IOpenIddictApplicationCache<OpenIddictEntityFrameworkCoreApplication> cache,
    ILogger<OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>> logger,
    IOptionsMonitor<OpenIddictCoreOptions> options,
    IOpenIddictApplicationStore<OpenIddictEntityFrameworkCoreApplication> store,
    DevIdentityOptions devIdentity)
    : OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>(cache, logger, options, store)
{
    public override async ValueTask<bool> ValidateRedirectUriAsync(OpenIddictEntityFrameworkCoreApplication application, string uri, CancellationToken cancellationToken = default) =>
        await base.ValidateRedirectUriAsync(application, uri, cancellationToken) || await LoopbackAllowedAsync(application, uri, cancellationToken);

    public override async ValueTask<bool> ValidatePostLogoutRedirectUriAsync(OpenIddictEntityFrameworkCoreApplication application, string uri, CancellationToken cancellationToken = default) =>
        await base.ValidatePostLogoutRedirectUriAsync(application, uri, cancellationToken) || await LoopbackAllowedAsync(application, uri, cancellationToken);

    /// <summary>An end-session request without client_id is matched by its URI: a loopback one names the clients that accept any.</summary>
    public override async IAsyncEnumerable<OpenIddictEntityFrameworkCoreApplication> FindByPostLogoutRedirectUriAsync(string uri,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var found = false;
        await foreach (var application in base.FindByPostLogoutRedirectUriAsync(uri, cancellationToken))
        {
            found = true;
            yield return application;
        }
        if (found || !IsLoopback(uri))
        {
            yield break;
        }
        foreach (var client in devIdentity.Clients.Where(c => c.AllowLoopbackRedirectUris))
        {
            if (await FindByClientIdAsync(client.ClientId, cancellationToken) is { } application)
            {
                yield return application;
            }
        }
    }

    private async ValueTask<bool> LoopbackAllowedAsync(OpenIddictEntityFrameworkCoreApplication application, string uri, CancellationToken cancellationToken)
    {
        if (!IsLoopback(uri))
        {
            return false;
        }
        var clientId = await GetClientIdAsync(application, cancellationToken);
        return devIdentity.Clients.Any(c => c.AllowLoopbackRedirectUris && string.Equals(c.ClientId, clientId, StringComparison.Ordinal));
    }

    /// <summary>http(s) on 127.0.0.0/8, [::1] or localhost, with no user info and no fragment.</summary>
    public static bool IsLoopback(string uri) =>
        Uri.TryCreate(uri, UriKind.Absolute, out var parsed) && parsed.Scheme is "http" or "https" &&
        string.IsNullOrEmpty(parsed.UserInfo) && string.IsNullOrEmpty(parsed.Fragment) &&
        (string.Equals(parsed.Host, "localhost", StringComparison.OrdinalIgnoreCase) ||
         (IPAddress.TryParse(parsed.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address)));
}
