using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.DevIdentity;

/// <summary>OpenIddict's clients, authorizations and tokens, in memory: everything is gone when the process stops.</summary>
public sealed class DevIdentityDbContext(DbContextOptions<DevIdentityDbContext> options) : DbContext(options);
