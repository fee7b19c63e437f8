using ClaudeProxy.Contracts;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Tokens;
using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.SignIn;

/// <summary>What became of a poll of the token endpoint with a device code.</summary>
public enum PollOutcome { Pending, SlowDown, Expired, Denied, Invalid, Approved }

/// <summary>A person as the identity provider described them at sign-in or refresh.</summary>
public sealed record SignedInPerson(string Issuer, string Subject, string? Email, string? Name, IReadOnlyList<string> Groups);

/// <summary>A person who may have tokens now, with the policy of their sign-in record.</summary>
public sealed record PersonAdmission(UserRecord User, DevicePolicy? Policy);

/// <summary>
/// Sign-ins in Postgres: device authorizations, people, their sign-in device records and refresh tokens. Every step
/// that may race (approving a code, spending a device code or a refresh token) is one conditional update, so of two
/// at once exactly one wins.
/// </summary>
public sealed partial class SignInStore(IDbContextFactory<GatewayDbContext> contexts, SignInOptions options,
    ConfiguredDeviceDirectory defaults, TimeProvider time, ILogger<SignInStore> logger, Limits.RedisAdmissionStore? standing = null)
{
    private static readonly TimeSpan KeepExpired = TimeSpan.FromDays(1);

    /// <summary>A new device authorization; the device code is returned once and kept only as its hash.</summary>
    public async Task<(string DeviceCode, DeviceAuthorization Authorization)> CreateAsync(string? clientAddress, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        await db.DeviceAuthorizations.Where(d => d.ExpiresAt < now - KeepExpired).ExecuteDeleteAsync(cancellationToken);
        for (var attempt = 1; ; attempt++)
        {
            var deviceCode = SignInCodes.NewSecret();
            var authorization = new DeviceAuthorization
            {
                DeviceCodeHash = SignInCodes.Hash(deviceCode),
                UserCode = SignInCodes.NewUserCode(),
                Status = DeviceAuthorization.Pending,
                CreatedAt = now,
                ExpiresAt = now + options.DeviceCodeLifetime,
                IntervalSeconds = options.PollingInterval,
                ClientAddress = clientAddress is { Length: <= 64 } ? clientAddress : null,
            };
            db.DeviceAuthorizations.Add(authorization);
            try
            {
                await db.SaveChangesAsync(cancellationToken);
                return (deviceCode, authorization);
            }
            catch (DbUpdateException) when (attempt < 5)
            {
                // A user code still on record (one in 2.6e10 per live code): draw again.
                db.ChangeTracker.Clear();
            }
        }
    }

    /// <summary>The authorization a typed user code names, while it still waits for the person; else null.</summary>
    public async Task<DeviceAuthorization?> FindPendingAsync(string userCode, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        return await db.DeviceAuthorizations.AsNoTracking()
            .FirstOrDefaultAsync(d => d.UserCode == userCode && d.Status == DeviceAuthorization.Pending && d.ExpiresAt > now, cancellationToken);
    }

    /// <summary>Refuses a waiting code; false when it no longer waits.</summary>
    public async Task<bool> DenyAsync(string userCode, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        return await db.DeviceAuthorizations.Where(d => d.UserCode == userCode && d.Status == DeviceAuthorization.Pending && d.ExpiresAt > now)
            .ExecuteUpdateAsync(s => s.SetProperty(d => d.Status, DeviceAuthorization.Denied), cancellationToken) == 1;
    }

    /// <summary>
    /// The person came back from the identity provider: record them, give them a sign-in device record if they have
    /// none, and approve the code for them. Null user when the code no longer waits; a person who may not sign in
    /// (deactivated, or their sign-in record revoked) gets the code denied and a null policy.
    /// </summary>
    public async Task<(UserRecord? User, bool Approved)> ApproveAsync(string userCode, SignedInPerson person, string? idpRefreshToken,
        CancellationToken cancellationToken)
    {
        var admission = await UpsertAsync(person, cancellationToken);
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        var waiting = db.DeviceAuthorizations.Where(d => d.UserCode == userCode && d.Status == DeviceAuthorization.Pending && d.ExpiresAt > now);
        if (admission.Policy is null)
        {
            await waiting.ExecuteUpdateAsync(s => s.SetProperty(d => d.Status, DeviceAuthorization.Denied), cancellationToken);
            return (admission.User, false);
        }
        var approved = await waiting.ExecuteUpdateAsync(s => s
            .SetProperty(d => d.Status, DeviceAuthorization.Approved)
            .SetProperty(d => d.UserId, admission.User.UserId)
            .SetProperty(d => d.IdpRefreshToken, idpRefreshToken), cancellationToken);
        return approved == 1 ? (admission.User, true) : (null, false);
    }

    /// <summary>
    /// One poll with a device code. Polling sooner than the interval is answered <c>slow_down</c> and raises the
    /// interval by 5 s (RFC 8628 §3.5); an approved code is spent by exactly one poll.
    /// </summary>
    public async Task<(PollOutcome Outcome, DeviceAuthorization? Authorization)> PollAsync(string deviceCode, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        var hash = SignInCodes.Hash(deviceCode);
        var authorization = await db.DeviceAuthorizations.FirstOrDefaultAsync(d => d.DeviceCodeHash == hash, cancellationToken);
        if (authorization is null || authorization.Status == DeviceAuthorization.Consumed)
        {
            return (PollOutcome.Invalid, null);
        }
        if (authorization.Status == DeviceAuthorization.Denied)
        {
            return (PollOutcome.Denied, null);
        }
        if (authorization.ExpiresAt <= now)
        {
            return (PollOutcome.Expired, null);
        }
        if (authorization.Status == DeviceAuthorization.Approved)
        {
            var spent = await db.DeviceAuthorizations.Where(d => d.Id == authorization.Id && d.Status == DeviceAuthorization.Approved)
                .ExecuteUpdateAsync(s => s.SetProperty(d => d.Status, DeviceAuthorization.Consumed).SetProperty(d => d.LastPolledAt, now), cancellationToken);
            return spent == 1 ? (PollOutcome.Approved, authorization) : (PollOutcome.Invalid, null);
        }
        // A second of slack for clocks of different instances and for the client's own timer.
        var tooSoon = authorization.LastPolledAt is { } last && now - last < TimeSpan.FromSeconds(authorization.IntervalSeconds - 1);
        await db.DeviceAuthorizations.Where(d => d.Id == authorization.Id).ExecuteUpdateAsync(s => s
            .SetProperty(d => d.LastPolledAt, now)
            .SetProperty(d => d.IntervalSeconds, authorization.IntervalSeconds + (tooSoon ? 5 : 0)), cancellationToken);
        return (tooSoon ? PollOutcome.SlowDown : PollOutcome.Pending, null);
    }

    /// <summary>A new refresh token of <paramref name="familyId"/>; the token is returned once and kept only as its hash.</summary>
    public async Task<string> IssueRefreshTokenAsync(string userId, Guid familyId, string? idpRefreshToken, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        var token = SignInCodes.NewSecret();
        db.RefreshTokens.Add(new RefreshTokenRecord
        {
            TokenHash = SignInCodes.Hash(token),
            FamilyId = familyId,
            UserId = userId,
            CreatedAt = now,
            ExpiresAt = now + options.RefreshTokenLifetime,
            IdpRefreshToken = idpRefreshToken,
        });
        await db.SaveChangesAsync(cancellationToken);
        return token;
    }

    /// <summary>The refresh token's record, whatever its state; null when it was never issued.</summary>
    public async Task<RefreshTokenRecord?> FindRefreshTokenAsync(string token, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var hash = SignInCodes.Hash(token);
        return await db.RefreshTokens.AsNoTracking().FirstOrDefaultAsync(r => r.TokenHash == hash, cancellationToken);
    }

    /// <summary>Spends a refresh token; false when another request spent it first.</summary>
    public async Task<bool> SpendRefreshTokenAsync(long id, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        return await db.RefreshTokens.Where(r => r.Id == id && r.UsedAt == null && r.RevokedAt == null && r.ExpiresAt > now)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.UsedAt, now), cancellationToken) == 1;
    }

    /// <summary>Ends a sign-in: every refresh token of the family is revoked.</summary>
    public async Task RevokeFamilyAsync(Guid familyId, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        await db.RefreshTokens.Where(r => r.FamilyId == familyId && r.RevokedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.RevokedAt, now), cancellationToken);
    }

    /// <summary>The person and the policy of their sign-in record, or a null policy when they may not have tokens now.</summary>
    public async Task<PersonAdmission?> AdmitAsync(string userId, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var user = await db.Users.FirstOrDefaultAsync(u => u.UserId == userId, cancellationToken);
        if (user is null)
        {
            return null;
        }
        var now = time.GetUtcNow();
        user.LastSeen = now;
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == UserRecord.DeviceIdOf(userId), cancellationToken);
        if (device is not null)
        {
            device.LastSeen = now;
        }
        await db.SaveChangesAsync(cancellationToken);
        return new PersonAdmission(user, PolicyOf(user, device));
    }

    /// <summary>Updates a person from what the identity provider says of them now (at a refresh).</summary>
    public async Task UpdateAsync(string userId, SignedInPerson person, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        await db.Users.Where(u => u.UserId == userId && u.Subject == person.Subject).ExecuteUpdateAsync(s => s
            .SetProperty(u => u.Email, u => person.Email ?? u.Email)
            .SetProperty(u => u.Name, u => person.Name ?? u.Name)
            .SetProperty(u => u.Groups, person.Groups.ToList()), cancellationToken);
    }

    /// <summary>The policy tokens may carry: null when the person is deactivated or their sign-in record is not active.</summary>
    public static DevicePolicy? PolicyOf(UserRecord user, DeviceRecord? device) =>
        user.Status != UserRecord.Active || device is not { Status: DeviceStatus.Active }
            ? null
            : new DevicePolicy(device.Models, device.RateLimit, device.TokenLimit, device.SpendCap, device.PolicyVersion);

    private async Task<(UserRecord User, DevicePolicy? Policy)> UpsertAsync(SignedInPerson person, CancellationToken cancellationToken)
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        var now = time.GetUtcNow();
        var user = await db.Users.FirstOrDefaultAsync(u => u.Issuer == person.Issuer && u.Subject == person.Subject, cancellationToken);
        if (user is null)
        {
            user = new UserRecord
            {
                UserId = SignInCodes.NewUserId(),
                Issuer = person.Issuer,
                Subject = person.Subject,
                Email = person.Email,
                Name = person.Name,
                Groups = [.. person.Groups],
                Status = UserRecord.Active,
                FirstSeen = now,
                LastSeen = now,
            };
            db.Users.Add(user);
            try
            {
                await db.SaveChangesAsync(cancellationToken);
                LogNewPerson(logger, user.UserId);
            }
            catch (DbUpdateException)
            {
                // The same person signed in on another instance at the same moment: use that record.
                db.ChangeTracker.Clear();
                user = await db.Users.FirstAsync(u => u.Issuer == person.Issuer && u.Subject == person.Subject, cancellationToken);
            }
        }
        user.Email = person.Email ?? user.Email;
        user.Name = person.Name ?? user.Name;
        user.Groups = [.. person.Groups];
        user.LastSeen = now;
        var deviceId = UserRecord.DeviceIdOf(user.UserId);
        var device = await db.Devices.FirstOrDefaultAsync(d => d.DeviceId == deviceId, cancellationToken);
        if (device is null)
        {
            device = defaults.NewRecord(deviceId, user.UserId, DeviceStatus.Active, now);
            device.AppVersion = "gateway sign-in";
            device.OwnerUserId = user.UserId;
            db.Devices.Add(device);
        }
        device.LastSeen = now;
        try
        {
            await db.SaveChangesAsync(cancellationToken);
        }
        catch (DbUpdateException)
        {
            // Its sign-in record was made on another instance at the same moment.
            db.ChangeTracker.Clear();
            user = await db.Users.FirstAsync(u => u.UserId == user.UserId, cancellationToken);
            device = await db.Devices.FirstAsync(d => d.DeviceId == deviceId, cancellationToken);
        }
        await Limits.RedisAdmissionStore.TrySeedStandingAsync(standing, device, logger);
        return (user, PolicyOf(user, device));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "A new person signed in: {UserId}")]
    private static partial void LogNewPerson(ILogger logger, string userId);
}
