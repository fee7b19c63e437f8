using System.Security.Cryptography;
using System.Text;

namespace ClaudeProxy.DevIdentity;

/// <summary>
/// The provider's users and clients, from the configuration section <c>DevIdentity</c> (environment variables
/// <c>DevIdentity__Password</c>, <c>DevIdentity__Users__0__Email</c>, <c>DevIdentity__Clients__0__ClientId</c>...).
/// Without users or clients configured, the documented test users and the <c>claudeproxy</c> client are used.
/// </summary>
public sealed class DevIdentityOptions
{
    public const string Section = "DevIdentity";
    public const string DefaultPassword = "dev-password";
    public const string DefaultClientId = "claudeproxy";
    public const string DefaultClientSecret = "dev-client-secret";

    /// <summary>The password of every user that has none of its own.</summary>
    public string Password { get; set; } = DefaultPassword;

    public List<DevUser> Users { get; set; } = [];

    public List<DevClient> Clients { get; set; } = [];

    /// <summary>The test users the provider knows when none are configured.</summary>
    public static IReadOnlyList<DevUser> DefaultUsers { get; } =
    [
        new() { Subject = "dev-alice", Email = "alice@example.com", Name = "Alice Developer", Groups = ["engineering"] },
        new() { Subject = "dev-bob", Email = "bob@example.com", Name = "Bob Operator", Groups = ["engineering", "claudeproxy-admins"] },
        new() { Subject = "dev-carol", Email = "carol@example.com", Name = "Carol Designer", Groups = ["design"] },
    ];

    /// <summary>Reads the section, fills in the defaults and stops the start with a message naming what is wrong.</summary>
    public static DevIdentityOptions Read(IConfiguration configuration)
    {
        var options = configuration.GetSection(Section).Get<DevIdentityOptions>() ?? new DevIdentityOptions();
        // Binding appends to a list it finds filled, so the defaults go in only after it, and only when nothing was configured.
        if (options.Users.Count == 0)
        {
            options.Users.AddRange(DefaultUsers.Select(u => u.Copy()));
        }
        if (options.Clients.Count == 0)
        {
            options.Clients.Add(new DevClient { ClientId = DefaultClientId, ClientSecret = DefaultClientSecret, AllowLoopbackRedirectUris = true });
        }
        options.Validate();
        return options;
    }

    private void Validate()
    {
        if (string.IsNullOrEmpty(Password))
        {
            throw new InvalidOperationException($"{Section}:Password must not be empty.");
        }
        foreach (var user in Users)
        {
            if (string.IsNullOrWhiteSpace(user.Email) || !user.Email.Contains('@', StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"{Section}:Users: every user needs an Email (got \"{user.Email}\").");
            }
            user.Email = user.Email.Trim();
            user.Name = string.IsNullOrWhiteSpace(user.Name) ? user.Email : user.Name.Trim();
            user.Subject = string.IsNullOrWhiteSpace(user.Subject) ? StableSubject(user.Email) : user.Subject.Trim();
            user.Groups = [.. user.Groups.Where(g => !string.IsNullOrWhiteSpace(g)).Select(g => g.Trim()).Distinct(StringComparer.Ordinal)];
        }
        Duplicate(Users.Select(u => u.Email), StringComparer.OrdinalIgnoreCase, "Users", "Email");
        Duplicate(Users.Select(u => u.Subject), StringComparer.Ordinal, "Users", "Subject");
        foreach (var client in Clients)
        {
            if (string.IsNullOrWhiteSpace(client.ClientId) || string.IsNullOrEmpty(client.ClientSecret))
            {
                throw new InvalidOperationException($"{Section}:Clients: every client needs a ClientId and a ClientSecret (it is a confidential client).");
            }
            foreach (var uri in client.RedirectUris.Concat(client.PostLogoutRedirectUris))
            {
                if (!Uri.TryCreate(uri, UriKind.Absolute, out var parsed) || parsed.Scheme is not ("http" or "https") || !string.IsNullOrEmpty(parsed.Fragment))
                {
                    throw new InvalidOperationException($"{Section}:Clients:{client.ClientId}: \"{uri}\" is not an absolute http(s) URI without a fragment.");
                }
            }
        }
        Duplicate(Clients.Select(c => c.ClientId), StringComparer.Ordinal, "Clients", "ClientId");
    }

    private static void Duplicate(IEnumerable<string> values, StringComparer comparer, string list, string field)
    {
        if (values.GroupBy(v => v, comparer).FirstOrDefault(g => g.Count() > 1) is { } duplicate)
        {
            throw new InvalidOperationException($"{Section}:{list}: {field} \"{duplicate.Key}\" is listed twice.");
        }
    }

    /// <summary>The same subject for the same email on every run and every machine.</summary>
    public static string StableSubject(string email) =>
        "dev-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(email.Trim().ToLowerInvariant())))[..24];
}

/// <summary>A person who can sign in.</summary>
public sealed class DevUser
{
    /// <summary>The <c>sub</c> claim; unset, one derived from the email that never changes.</summary>
    public string Subject { get; set; } = "";
    public string Email { get; set; } = "";
    public string Name { get; set; } = "";
    public List<string> Groups { get; set; } = [];
    /// <summary>This user's own password; unset, <see cref="DevIdentityOptions.Password"/>.</summary>
    public string? Password { get; set; }

    public DevUser Copy() => new() { Subject = Subject, Email = Email, Name = Name, Groups = [.. Groups], Password = Password };
}

/// <summary>A confidential client (id and secret) allowed the authorization code flow with PKCE and refresh tokens.</summary>
public sealed class DevClient
{
    public string ClientId { get; set; } = "";
    public string ClientSecret { get; set; } = "";
    public List<string> RedirectUris { get; set; } = [];
    public List<string> PostLogoutRedirectUris { get; set; } = [];
    /// <summary>
    /// Also accept any redirect and post-logout redirect URI on a loopback host (127.0.0.1, localhost, [::1]), whatever
    /// its port and path: tests and <c>aspire run</c> know their ports only once started.
    /// </summary>
    public bool AllowLoopbackRedirectUris { get; set; }
}
