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
            timeout.CancelAfter(TimeSpan.FromSeconds(20));
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
            if (person is null && root.TryGetProperty("access_token", out var accessToken) && accessToken.ValueKind == JsonValueKind.String
                && !string.IsNullOrEmpty(configuration.UserInfoEndpoint))
            {
                // No ID token with the refresh (providers may leave it out): what the provider says of the person now,
                // from userinfo, so that their groups stay current.
                person = await UserInfoAsync(handler.Backchannel, configuration.UserInfoEndpoint, accessToken.GetString()!, configuration.Issuer, subject, timeout.Token);
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

    private async Task<SignedInPerson?> UserInfoAsync(HttpClient backchannel, string endpoint, string accessToken, string issuer, string subject,
        CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, endpoint);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", accessToken);
        using var response = await backchannel.SendAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode || response.Content.Headers.ContentType?.MediaType != "application/json")
        {
            // A signed (JWT) userinfo answer, or none: the person is kept as they were.
            return null;
        }
        using var json = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(cancellationToken), cancellationToken: cancellationToken);
        var claims = new List<Claim>();
        foreach (var property in json.RootElement.EnumerateObject())
        {
            if (property.Value.ValueKind == JsonValueKind.String)
            {
                claims.Add(new Claim(property.Name, property.Value.GetString()!, ClaimValueTypes.String, issuer));
            }
            else if (property.Value.ValueKind == JsonValueKind.Array)
            {
                claims.AddRange(property.Value.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String)
                    .Select(e => new Claim(property.Name, e.GetString()!, ClaimValueTypes.String, issuer)));
            }
        }
        var person = PersonFrom(new ClaimsPrincipal(new ClaimsIdentity(claims)), options.GroupsClaim, issuer);
        return person?.Subject == subject ? person : null;
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
