using ClaudeProxy.Gateway.Usage;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Migrations.Internal;

namespace ClaudeProxy.Gateway.Data;

/// <summary>
/// The gateway owns this schema: devices, usage events, their rollups and the audit trail. Column names are the
/// properties' names in snake_case; usage events take theirs from <see cref="UsageColumns"/>.
/// </summary>
public sealed class GatewayDbContext(DbContextOptions<GatewayDbContext> options) : DbContext(options)
{
    public DbSet<DeviceRecord> Devices => Set<DeviceRecord>();
    public DbSet<UsageEvent> UsageEvents => Set<UsageEvent>();
    public DbSet<UsageRollup> UsageRollups => Set<UsageRollup>();
    public DbSet<UserRollup> UserRollups => Set<UserRollup>();
    public DbSet<GroupRollup> GroupRollups => Set<GroupRollup>();
    public DbSet<ModelRollup> ModelRollups => Set<ModelRollup>();
    public DbSet<SessionRollup> SessionRollups => Set<SessionRollup>();
    public DbSet<TtftRollup> TtftRollups => Set<TtftRollup>();
    public DbSet<RefusalRollup> RefusalRollups => Set<RefusalRollup>();
    public DbSet<AuditEntry> Audit => Set<AuditEntry>();
    public DbSet<UsageDeadLetter> UsageDeadLetters => Set<UsageDeadLetter>();
    public DbSet<UserRecord> Users => Set<UserRecord>();
    public DbSet<DeviceAuthorization> DeviceAuthorizations => Set<DeviceAuthorization>();
    public DbSet<RefreshTokenRecord> RefreshTokens => Set<RefreshTokenRecord>();
    public DbSet<GroupRecord> Groups => Set<GroupRecord>();
    public DbSet<GroupMember> GroupMembers => Set<GroupMember>();
    public DbSet<SpendLimitRecord> SpendLimits => Set<SpendLimitRecord>();
    public DbSet<ManagedSettingsRecord> ManagedSettings => Set<ManagedSettingsRecord>();

    /// <summary>The naming every <see cref="GatewayDbContext"/> is built with, at run time and at design time.</summary>
    public static void UseGatewayNaming(DbContextOptionsBuilder options) =>
        options.UseSnakeCaseNamingConvention().ReplaceService<IHistoryRepository, GatewayHistoryRepository>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<DeviceRecord>(e =>
        {
            e.ToTable("devices");
            e.HasKey(d => d.DeviceId);
            e.Property(d => d.DeviceId).HasMaxLength(128);
            e.Property(d => d.AppVersion).HasMaxLength(64);
            e.Property(d => d.UserId).HasMaxLength(128);
            e.Property(d => d.OrgId).HasMaxLength(128);
            e.Property(d => d.Status).HasMaxLength(16);
            e.Property(d => d.SpendCap).HasPrecision(18, 6);
            e.Property(d => d.PublicKey).HasMaxLength(512);
            e.Property(d => d.KeyAlgorithm).HasMaxLength(16);
            e.HasIndex(d => d.Status);
            e.HasIndex(d => d.LastSeen);
            e.Property(d => d.OwnerUserId).HasMaxLength(32);
            e.HasIndex(d => d.OwnerUserId);
        });

        modelBuilder.Entity<UserRecord>(e =>
        {
            e.ToTable("users");
            e.HasKey(u => u.UserId);
            e.Property(u => u.UserId).HasMaxLength(32);
            e.Property(u => u.Issuer).HasMaxLength(512);
            e.Property(u => u.Subject).HasMaxLength(255);
            e.Property(u => u.Email).HasMaxLength(320);
            e.Property(u => u.Name).HasMaxLength(256);
            e.Property(u => u.Status).HasMaxLength(16);
            e.HasIndex(u => new { u.Issuer, u.Subject }).IsUnique();
            e.HasIndex(u => u.Email);
        });

        modelBuilder.Entity<DeviceAuthorization>(e =>
        {
            e.ToTable("device_authorizations");
            e.HasKey(d => d.Id);
            e.Property(d => d.Id).UseIdentityAlwaysColumn();
            e.Property(d => d.DeviceCodeHash).HasMaxLength(64);
            e.Property(d => d.UserCode).HasMaxLength(8);
            e.Property(d => d.Status).HasMaxLength(16);
            e.Property(d => d.ClientAddress).HasMaxLength(64);
            e.Property(d => d.UserId).HasMaxLength(32);
            e.HasIndex(d => d.DeviceCodeHash).IsUnique();
            e.HasIndex(d => d.UserCode).IsUnique();
            e.HasIndex(d => d.ExpiresAt);
        });

        modelBuilder.Entity<GroupRecord>(e =>
        {
            e.ToTable("groups");
            e.HasKey(g => g.GroupId);
            e.Property(g => g.GroupId).HasMaxLength(32);
            e.Property(g => g.Name).HasMaxLength(256);
            e.Property(g => g.Source).HasMaxLength(16);
            e.Property(g => g.SpendPeriod).HasMaxLength(8);
            e.Property(g => g.TimeZone).HasMaxLength(64);
            e.HasIndex(g => g.Name).IsUnique();
        });

        modelBuilder.Entity<GroupMember>(e =>
        {
            e.ToTable("group_members");
            e.HasKey(m => new { m.GroupId, m.DeviceId });
            e.Property(m => m.GroupId).HasMaxLength(32);
            e.Property(m => m.DeviceId).HasMaxLength(128);
            e.HasIndex(m => m.DeviceId);
        });

        modelBuilder.Entity<SpendLimitRecord>(e =>
        {
            e.ToTable("spend_limits");
            e.HasKey(l => l.SpendLimitId);
            e.Property(l => l.SpendLimitId).HasMaxLength(32);
            e.Property(l => l.ScopeType).HasMaxLength(16);
            e.Property(l => l.ScopeId).HasMaxLength(32);
            e.Property(l => l.Period).HasMaxLength(8);
            e.Property(l => l.Currency).HasMaxLength(3);
            e.HasIndex(l => new { l.ScopeType, l.ScopeId, l.PooledBudget }).IsUnique();
        });

        modelBuilder.Entity<ManagedSettingsRecord>(e =>
        {
            e.ToTable("managed_settings");
            e.HasKey(m => m.Scope);
            e.Property(m => m.Scope).HasMaxLength(32);
            e.Property(m => m.Settings).HasColumnType("jsonb");
            e.Property(m => m.UpdatedBy).HasMaxLength(320);
        });

        modelBuilder.Entity<RefreshTokenRecord>(e =>
        {
            e.ToTable("refresh_tokens");
            e.HasKey(r => r.Id);
            e.Property(r => r.Id).UseIdentityAlwaysColumn();
            e.Property(r => r.TokenHash).HasMaxLength(64);
            e.Property(r => r.UserId).HasMaxLength(32);
            e.HasIndex(r => r.TokenHash).IsUnique();
            e.HasIndex(r => r.FamilyId);
            e.HasIndex(r => r.UserId);
            e.HasIndex(r => r.ExpiresAt);
        });

        modelBuilder.Entity<UsageEvent>(e =>
        {
            e.ToTable("usage_events");
            e.HasKey(u => u.Id);
            e.Property(u => u.Id).ValueGeneratedNever();
            foreach (var column in UsageColumns.All)
            {
                e.Property(column.Property).HasColumnName(column.Name);
            }
            e.Property(u => u.CostUsd).HasPrecision(20, 10);
            e.HasIndex(u => new { u.DeviceId, u.Time });
            e.HasIndex(u => u.Time);
            e.HasIndex(u => u.SessionId);
        });

        modelBuilder.Entity<UsageRollup>(e =>
        {
            e.ToTable("usage_rollups");
            e.HasKey(r => new { r.Granularity, r.BucketStart, r.DeviceId, r.Model });
            e.Property(r => r.Granularity).HasMaxLength(1);
            // snake_case would run the digit into the word before it (cache_write5m_tokens).
            e.Property(r => r.CacheWrite5mTokens).HasColumnName("cache_write_5m_tokens");
            e.Property(r => r.CacheWrite1hTokens).HasColumnName("cache_write_1h_tokens");
            e.Property(r => r.CostUsd).HasPrecision(20, 10);
            e.HasIndex(r => new { r.Granularity, r.DeviceId, r.BucketStart });
        });

        // The analytics rollups: each page reads one range of one of them, from a covering index where it reads many rows.
        static void Counters<T>(EntityTypeBuilder<T> e) where T : class
        {
            e.Property<long>("CacheWrite5mTokens").HasColumnName("cache_write_5m_tokens");
            e.Property<long>("CacheWrite1hTokens").HasColumnName("cache_write_1h_tokens");
            e.Property<decimal>("CostUsd").HasPrecision(20, 10);
        }
        string[] counters = ["Requests", "InputTokens", "CacheWrite5mTokens", "CacheWrite1hTokens", "CacheReadTokens", "CostUsd"];
        // The days of every device over a range, for the analytics by device (a year is some 400,000 rows).
        modelBuilder.Entity<UsageRollup>().HasIndex(r => new { r.Granularity, r.BucketStart }).IncludeProperties([nameof(UsageRollup.DeviceId), nameof(UsageRollup.Model), .. counters]);
        modelBuilder.Entity<UserRollup>(e =>
        {
            e.ToTable("user_rollups");
            e.HasKey(r => new { r.BucketStart, r.UserId, r.Model });
            Counters(e);
            e.HasIndex(r => r.BucketStart).IncludeProperties([nameof(UserRollup.UserId), nameof(UserRollup.Model), .. counters]);
        });
        modelBuilder.Entity<GroupRollup>(e =>
        {
            e.ToTable("group_rollups");
            e.HasKey(r => new { r.BucketStart, r.GroupId, r.Model });
            Counters(e);
        });
        modelBuilder.Entity<ModelRollup>(e =>
        {
            e.ToTable("model_rollups");
            e.HasKey(r => new { r.BucketStart, r.Model, r.Status, r.StreamError });
            Counters(e);
        });
        modelBuilder.Entity<SessionRollup>(e =>
        {
            e.ToTable("session_rollups");
            e.HasKey(r => new { r.SessionId, r.AgentId, r.Model });
            Counters(e);
            // Covering: the pages across sessions read a few weeks of rows from the index alone.
            e.HasIndex(r => r.LastSeen).IncludeProperties(r => new
            {
                r.FirstSeen, r.SessionId, r.AgentId, r.Model, r.Requests, r.InputTokens, r.CacheWrite5mTokens, r.CacheWrite1hTokens, r.CacheReadTokens,
                r.CostUsd, r.DeviceId, r.UserEmail,
            });
        });
        modelBuilder.Entity<TtftRollup>(e =>
        {
            e.ToTable("ttft_rollups");
            e.HasKey(r => new { r.BucketStart, r.Model, r.Bucket });
        });
        modelBuilder.Entity<RefusalRollup>(e =>
        {
            e.ToTable("refusal_rollups");
            e.HasKey(r => new { r.BucketStart, r.Reason });
        });

        modelBuilder.Entity<UsageDeadLetter>(e =>
        {
            e.ToTable("usage_dead_letters");
            e.HasKey(d => d.Id);
            e.Property(d => d.Id).UseIdentityAlwaysColumn();
            e.Property(d => d.Source).HasMaxLength(16);
            e.HasIndex(d => d.Time);
        });

        modelBuilder.Entity<AuditEntry>(e =>
        {
            e.ToTable("audit_log");
            e.HasKey(a => a.Id);
            e.Property(a => a.Id).UseIdentityAlwaysColumn();
            e.Property(a => a.Before).HasColumnType("jsonb");
            e.Property(a => a.After).HasColumnType("jsonb");
            e.HasIndex(a => new { a.Target, a.Time });
        });

        // The schema predates snake_case naming: keys and indexes keep EF's default names (PK_devices, IX_devices_status).
        foreach (var entity in modelBuilder.Model.GetEntityTypes())
        {
            var table = entity.GetTableName();
            foreach (var key in entity.GetKeys())
            {
                key.SetName($"PK_{table}");
            }
            foreach (var index in entity.GetIndexes())
            {
                index.SetDatabaseName($"IX_{table}_{string.Join('_', index.Properties.Select(p => p.GetColumnName()))}");
            }
        }
    }
}

/// <summary>
/// The migrations history keeps the column names every deployed database has (<c>"MigrationId"</c>,
/// <c>"ProductVersion"</c>): the snake_case convention would otherwise rename them and no applied migration would be found.
/// </summary>
#pragma warning disable EF1001 // Npgsql's history repository is the provider's own; only its table's column names change here.
internal sealed class GatewayHistoryRepository(HistoryRepositoryDependencies dependencies) : NpgsqlHistoryRepository(dependencies)
#pragma warning restore EF1001
{
    protected override void ConfigureTable(EntityTypeBuilder<HistoryRow> history)
    {
        base.ConfigureTable(history);
        history.Property(h => h.MigrationId).HasColumnName(nameof(HistoryRow.MigrationId));
        history.Property(h => h.ProductVersion).HasColumnName(nameof(HistoryRow.ProductVersion));
    }
}
