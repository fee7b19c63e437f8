using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.Data;

/// <summary>The gateway owns this schema: devices, usage events, their rollups and the audit trail.</summary>
public sealed class GatewayDbContext(DbContextOptions<GatewayDbContext> options) : DbContext(options)
{
    public DbSet<DeviceRecord> Devices => Set<DeviceRecord>();
    public DbSet<UsageRow> UsageEvents => Set<UsageRow>();
    public DbSet<UsageRollup> UsageRollups => Set<UsageRollup>();
    public DbSet<AuditEntry> Audit => Set<AuditEntry>();
    public DbSet<UsageDeadLetter> UsageDeadLetters => Set<UsageDeadLetter>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<DeviceRecord>(e =>
        {
            e.ToTable("devices");
            e.HasKey(d => d.DeviceId);
            e.Property(d => d.DeviceId).HasColumnName("device_id").HasMaxLength(128);
            e.Property(d => d.AppVersion).HasColumnName("app_version").HasMaxLength(64);
            e.Property(d => d.UserId).HasColumnName("user_id").HasMaxLength(128);
            e.Property(d => d.OrgId).HasColumnName("org_id").HasMaxLength(128);
            e.Property(d => d.Status).HasColumnName("status").HasMaxLength(16);
            e.Property(d => d.Models).HasColumnName("models");
            e.Property(d => d.RateLimit).HasColumnName("rate_limit");
            e.Property(d => d.TokenLimit).HasColumnName("token_limit");
            e.Property(d => d.SpendCap).HasColumnName("spend_cap").HasPrecision(18, 6);
            e.Property(d => d.PolicyVersion).HasColumnName("policy_version");
            e.Property(d => d.PublicKey).HasColumnName("public_key").HasMaxLength(512);
            e.Property(d => d.KeyAlgorithm).HasColumnName("key_algorithm").HasMaxLength(16);
            e.Property(d => d.KeyEnrolledAt).HasColumnName("key_enrolled_at");
            e.Property(d => d.FirstSeen).HasColumnName("first_seen");
            e.Property(d => d.LastSeen).HasColumnName("last_seen");
            e.HasIndex(d => d.Status);
            e.HasIndex(d => d.LastSeen);
        });

        modelBuilder.Entity<UsageRow>(e =>
        {
            e.ToTable("usage_events");
            e.HasKey(u => u.Id);
            e.Property(u => u.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(u => u.Time).HasColumnName("time");
            e.Property(u => u.DeviceId).HasColumnName("device_id");
            e.Property(u => u.UserId).HasColumnName("user_id");
            e.Property(u => u.OrgId).HasColumnName("org_id");
            e.Property(u => u.SessionId).HasColumnName("session_id");
            e.Property(u => u.AgentId).HasColumnName("agent_id");
            e.Property(u => u.Model).HasColumnName("model");
            e.Property(u => u.Endpoint).HasColumnName("endpoint");
            e.Property(u => u.Status).HasColumnName("status");
            e.Property(u => u.Streamed).HasColumnName("streamed");
            e.Property(u => u.InputTokens).HasColumnName("input_tokens");
            e.Property(u => u.OutputTokens).HasColumnName("output_tokens");
            e.Property(u => u.CacheWrite5mTokens).HasColumnName("cache_write_5m_tokens");
            e.Property(u => u.CacheWrite1hTokens).HasColumnName("cache_write_1h_tokens");
            e.Property(u => u.CacheReadTokens).HasColumnName("cache_read_tokens");
            e.Property(u => u.WebSearchRequests).HasColumnName("web_search_requests");
            e.Property(u => u.WebFetchRequests).HasColumnName("web_fetch_requests");
            e.Property(u => u.CostUsd).HasColumnName("cost_usd").HasPrecision(20, 10);
            e.Property(u => u.LatencyMs).HasColumnName("latency_ms");
            e.Property(u => u.TimeToFirstByteMs).HasColumnName("ttfb_ms");
            e.Property(u => u.UpstreamRequestId).HasColumnName("upstream_request_id");
            e.Property(u => u.CorrelationId).HasColumnName("correlation_id");
            e.Property(u => u.Cancelled).HasColumnName("cancelled");
            e.Property(u => u.StreamError).HasColumnName("stream_error");
            e.Property(u => u.CostEstimated).HasColumnName("cost_estimated");
            e.Property(u => u.OutputEstimated).HasColumnName("output_estimated");
            e.HasIndex(u => new { u.DeviceId, u.Time });
            e.HasIndex(u => u.Time);
            e.HasIndex(u => u.SessionId);
        });

        modelBuilder.Entity<UsageRollup>(e =>
        {
            e.ToTable("usage_rollups");
            e.HasKey(r => new { r.Granularity, r.BucketStart, r.DeviceId, r.Model });
            e.Property(r => r.Granularity).HasColumnName("granularity").HasMaxLength(1);
            e.Property(r => r.BucketStart).HasColumnName("bucket_start");
            e.Property(r => r.DeviceId).HasColumnName("device_id");
            e.Property(r => r.Model).HasColumnName("model");
            e.Property(r => r.Requests).HasColumnName("requests");
            e.Property(r => r.Errors).HasColumnName("errors");
            e.Property(r => r.InputTokens).HasColumnName("input_tokens");
            e.Property(r => r.OutputTokens).HasColumnName("output_tokens");
            e.Property(r => r.CacheWrite5mTokens).HasColumnName("cache_write_5m_tokens");
            e.Property(r => r.CacheWrite1hTokens).HasColumnName("cache_write_1h_tokens");
            e.Property(r => r.CacheReadTokens).HasColumnName("cache_read_tokens");
            e.Property(r => r.CostUsd).HasColumnName("cost_usd").HasPrecision(20, 10);
            e.Property(r => r.UnpricedRequests).HasColumnName("unpriced_requests");
            e.HasIndex(r => new { r.Granularity, r.DeviceId, r.BucketStart });
        });

        modelBuilder.Entity<UsageDeadLetter>(e =>
        {
            e.ToTable("usage_dead_letters");
            e.HasKey(d => d.Id);
            e.Property(d => d.Id).HasColumnName("id").UseIdentityAlwaysColumn();
            e.Property(d => d.Time).HasColumnName("time");
            e.Property(d => d.EventId).HasColumnName("event_id");
            e.Property(d => d.Source).HasColumnName("source").HasMaxLength(16);
            e.Property(d => d.Reason).HasColumnName("reason");
            e.Property(d => d.Payload).HasColumnName("payload");
            e.HasIndex(d => d.Time);
        });

        modelBuilder.Entity<AuditEntry>(e =>
        {
            e.ToTable("audit_log");
            e.HasKey(a => a.Id);
            e.Property(a => a.Id).HasColumnName("id").UseIdentityAlwaysColumn();
            e.Property(a => a.Time).HasColumnName("time");
            e.Property(a => a.Actor).HasColumnName("actor");
            e.Property(a => a.Action).HasColumnName("action");
            e.Property(a => a.Target).HasColumnName("target");
            e.Property(a => a.Before).HasColumnName("before").HasColumnType("jsonb");
            e.Property(a => a.After).HasColumnName("after").HasColumnType("jsonb");
            e.HasIndex(a => new { a.Target, a.Time });
        });
    }
}
