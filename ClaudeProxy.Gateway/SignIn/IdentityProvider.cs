using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;

namespace ClaudeProxy.Gateway.SignIn;

/// <summary>What the identity provider said when asked again at a refresh.</summary>
public enum ProviderVerdict { StillSignedIn, Refused, Unavailable }

/// <summary>
/// The company's identity provider, after the sign-in: asked again at each refresh (with its own refresh token)
/// whether the person may still sign in, and what it now says of them. Everything comes from its discovery document;
/// nothing here is specific to one provider.
/// </summary>
public sealed partial class IdentityProvider(IOptionsMonitor<OpenIdConnectOptions> oidc, SignInOptions options, ILogger<IdentityProvider> logger)
{
    private const int MaxGroups = 500;
    private const int MaxClaimLength = 512;

    /// <summary>A person from the claims of the sign-in (ID token and userinfo); null without a subject.</summary>
    public static SignedInPerson? PersonFrom(ClaimsPrincipal principal, string groupsClaim, string fallbackIssuer)
    {
        var sub = principal.FindFirst("sub");
        if (sub is null || string.IsNullOrWhiteSpace(sub.Value) || sub.Value.Length > 255)
        {
            return null;
        }
        var issuer = string.IsNullOrEmpty(sub.Issuer) || sub.Issuer == ClaimsIdentity.DefaultIssuer ? fallbackIssuer : sub.Issuer;
        return new SignedInPerson(Clip(issuer, 512)!, sub.Value, Clip(principal.FindFirst("email")?.Value, 320),
            Clip(principal.FindFirst("name")?.Value ?? principal.FindFirst("preferred_username")?.Value, 256),
            Groups(principal.FindAll(groupsClaim).Select(c => c.Value)));
    }

    /// <summary>
    /// Asks the provider's token endpoint with its refresh token. <c>invalid_grant</c> (or any 400/401) means the
    /// person may no longer sign in; a network failure or 5xx is the provider being away, not a refusal.
    /// </summary>
    public async Task<(ProviderVerdict Verdict, string? NewRefreshToken, SignedInPerson? Person)> RefreshAsync(string refreshToken, string subject,
        CancellationToken cancellationToken)
    {
        var handler = oidc.Get(SignInOptions.Scheme);
        try
        {
            var configuration = await handler.ConfigurationManager!.GetConfigurationAsync(cancellationToken);
            var form = new Dictionary<string, string>
            {
                ["grant_type"] = "refresh_token",
                ["refresh_token"] = refreshToken,
                ["client_id"] = options.ClientId,
            };
            if (options.ClientSecret is { } secret)
            {
                form["client_secret"] = secret;
            }
            using var request = new HttpRequestMessage(HttpMethod.Post, configuration.TokenEndpoint) { Content = new FormUrlEncodedContent(form) };
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            using var response = await handler.Backchannel.SendAsync(request, timeout.Token);
            if ((int)response.StatusCode is 400 or 401)
            {
                LogRefused(logger, (int)response.StatusCode);
                return (ProviderVerdict.Refused, null, null);
            }
            if (!response.IsSuccessStatusCode)
            {
                LogUnavailable(logger, $"status {(int)response.StatusCode}");
                return (ProviderVerdict.Unavailable, null, null);
            }
            using var json = JsonDocument.Parse(await response.Content.ReadAsStreamAsync(timeout.Token));
            var root = json.RootElement;
            var newRefresh = root.TryGetProperty("refresh_token", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
            SignedInPerson? person = null;
            if (root.TryGetProperty("id_token", out var idToken) && idToken.ValueKind == JsonValueKind.String)
            {
                // Straight from the provider's token endpoint over the back channel it was discovered on: what it says of
                // the person is taken as it is (OpenID Connect Core §3.1.3.7), for the same subject only.
                var jwt = new JsonWebToken(idToken.GetString());
                var principal = new ClaimsPrincipal(new ClaimsIdentity(jwt.Claims));
                person = PersonFrom(principal, options.GroupsClaim, jwt.Issuer);
                if (person is not null && person.Subject != subject)
                {
                    person = null;
                }
            }
            return (ProviderVerdict.StillSignedIn, newRefresh, person);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or InvalidOperationException
            or ArgumentException or Microsoft.IdentityModel.Tokens.SecurityTokenException && !cancellationToken.IsCancellationRequested)
        {
            LogUnavailable(logger, e.GetType().Name);
            return (ProviderVerdict.Unavailable, null, null);
        }
    }

    private static List<string> Groups(IEnumerable<string> values)
    {
        var groups = new List<string>();
        foreach (var value in values)
        {
            // Some providers put the whole array in one claim as JSON text.
            if (value.StartsWith('['))
            {
                try
                {
                    using var array = JsonDocument.Parse(value);
                    groups.AddRange(array.RootElement.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!));
                    continue;
                }
                catch (JsonException)
                {
                }
            }
            groups.Add(value);
        }
        return [.. groups.Where(g => g.Length is > 0 and <= MaxClaimLength).Distinct(StringComparer.Ordinal).Take(MaxGroups)];
    }

    private static string? Clip(string? value, int max) => string.IsNullOrWhiteSpace(value) ? null : value.Length > max ? value[..max] : value;

    [LoggerMessage(Level = LogLevel.Information, Message = "The identity provider refused a refresh (status {Status}): the sign-in ends")]
    private static partial void LogRefused(ILogger logger, int status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The identity provider could not be asked at a refresh ({Reason}): the refresh is refused for now, the sign-in kept")]
    private static partial void LogUnavailable(ILogger logger, string reason);
}
