using System.Collections.Concurrent;

namespace ClaudeProxy.Admin.Auth;

/// <summary>After five failed sign-ins from one address, that address is locked out for fifteen minutes.</summary>
public sealed class LoginThrottle(TimeProvider time)
{
    public const int MaxFailures = 5;
    public static readonly TimeSpan Lockout = TimeSpan.FromMinutes(15);
    private readonly ConcurrentDictionary<string, (int Failures, DateTimeOffset? LockedUntil)> _state = new();

    public bool IsLocked(string address) =>
        _state.TryGetValue(address, out var s) && s.LockedUntil is { } until && until > time.GetUtcNow();

    public void Failed(string address) => _state.AddOrUpdate(address, (1, null), (_, s) =>
    {
        var failures = s.LockedUntil is { } until && until <= time.GetUtcNow() ? 1 : s.Failures + 1;
        return (failures, failures >= MaxFailures ? time.GetUtcNow() + Lockout : null);
    });

    public void Succeeded(string address) => _state.TryRemove(address, out _);
}
