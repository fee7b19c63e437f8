using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace ClaudeProxy.DevIdentity;

/// <summary>The configured users, their passwords, and which of them are disabled right now (kept in memory).</summary>
public sealed class DevUserDirectory(DevIdentityOptions options)
{
    private readonly ConcurrentDictionary<string, bool> _disabled = new(StringComparer.Ordinal);

    public IReadOnlyList<DevUser> Users => options.Users;

    /// <summary>A user by email, or by the part of the email before '@' when only one user has it; null otherwise.</summary>
    public DevUser? Find(string? username)
    {
        if (string.IsNullOrWhiteSpace(username) || username.Length > 320)
        {
            return null;
        }
        username = username.Trim();
        if (options.Users.FirstOrDefault(u => string.Equals(u.Email, username, StringComparison.OrdinalIgnoreCase)) is { } user)
        {
            return user;
        }
        var byLocalPart = options.Users.Where(u => string.Equals(u.Email[..u.Email.IndexOf('@', StringComparison.Ordinal)], username, StringComparison.OrdinalIgnoreCase)).ToList();
        return byLocalPart.Count == 1 ? byLocalPart[0] : null;
    }

    public DevUser? FindBySubject(string? subject) =>
        subject is null ? null : options.Users.FirstOrDefault(u => string.Equals(u.Subject, subject, StringComparison.Ordinal));

    public bool IsDisabled(DevUser user) => _disabled.ContainsKey(user.Subject);

    public void Disable(DevUser user) => _disabled[user.Subject] = true;

    public void Enable(DevUser user) => _disabled.TryRemove(user.Subject, out _);

    /// <summary>True when the password is this user's, compared in constant time.</summary>
    public bool PasswordMatches(DevUser user, string? password) =>
        password is not null && CryptographicOperations.FixedTimeEquals(
            SHA256.HashData(Encoding.UTF8.GetBytes(password)), SHA256.HashData(Encoding.UTF8.GetBytes(user.Password ?? options.Password)));
}
