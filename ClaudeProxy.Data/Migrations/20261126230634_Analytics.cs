using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ClaudeProxy.Data.Migrations
{
    /// <inheritdoc />
    public partial class Analytics : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "parent_agent_id",
                table: "usage_events",
                type: "text",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "group_rollups",
                columns: table => new
                {
                    bucket_start = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    group_id = table.Column<string>(type: "text", nullable: false),
                    model = table.Column<string>(type: "text", nullable: false),
                    requests = table.Column<long>(type: "bigint", nullable: false),
                    errors = table.Column<long>(type: "bigint", nullable: false),
                    input_tokens = table.Column<long>(type: "bigint", nullable: false),
                    output_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_5m_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_1h_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_read_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cost_usd = table.Column<decimal>(type: "numeric(20,10)", precision: 20, scale: 10, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_group_rollups", x => new { x.bucket_start, x.group_id, x.model });
                });

            migrationBuilder.CreateTable(
                name: "model_rollups",
                columns: table => new
                {
                    bucket_start = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    model = table.Column<string>(type: "text", nullable: false),
                    status = table.Column<int>(type: "integer", nullable: false),
                    stream_error = table.Column<bool>(type: "boolean", nullable: false),
                    requests = table.Column<long>(type: "bigint", nullable: false),
                    input_tokens = table.Column<long>(type: "bigint", nullable: false),
                    output_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_5m_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_1h_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_read_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cost_usd = table.Column<decimal>(type: "numeric(20,10)", precision: 20, scale: 10, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_model_rollups", x => new { x.bucket_start, x.model, x.status, x.stream_error });
                });

            migrationBuilder.CreateTable(
                name: "refusal_rollups",
                columns: table => new
                {
                    bucket_start = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    requests = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_refusal_rollups", x => new { x.bucket_start, x.reason });
                });

            migrationBuilder.CreateTable(
                name: "session_rollups",
                columns: table => new
                {
                    session_id = table.Column<string>(type: "text", nullable: false),
                    agent_id = table.Column<string>(type: "text", nullable: false),
                    model = table.Column<string>(type: "text", nullable: false),
                    device_id = table.Column<string>(type: "text", nullable: false),
                    user_email = table.Column<string>(type: "text", nullable: true),
                    parent_agent_id = table.Column<string>(type: "text", nullable: true),
                    first_seen = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    last_seen = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    requests = table.Column<long>(type: "bigint", nullable: false),
                    errors = table.Column<long>(type: "bigint", nullable: false),
                    input_tokens = table.Column<long>(type: "bigint", nullable: false),
                    output_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_5m_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_1h_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_read_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cost_usd = table.Column<decimal>(type: "numeric(20,10)", precision: 20, scale: 10, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_session_rollups", x => new { x.session_id, x.agent_id, x.model });
                });

            migrationBuilder.CreateTable(
                name: "ttft_rollups",
                columns: table => new
                {
                    bucket_start = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    model = table.Column<string>(type: "text", nullable: false),
                    bucket = table.Column<short>(type: "smallint", nullable: false),
                    requests = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_ttft_rollups", x => new { x.bucket_start, x.model, x.bucket });
                });

            migrationBuilder.CreateTable(
                name: "user_rollups",
                columns: table => new
                {
                    bucket_start = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    user_id = table.Column<string>(type: "text", nullable: false),
                    model = table.Column<string>(type: "text", nullable: false),
                    requests = table.Column<long>(type: "bigint", nullable: false),
                    errors = table.Column<long>(type: "bigint", nullable: false),
                    input_tokens = table.Column<long>(type: "bigint", nullable: false),
                    output_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_5m_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_write_1h_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cache_read_tokens = table.Column<long>(type: "bigint", nullable: false),
                    cost_usd = table.Column<decimal>(type: "numeric(20,10)", precision: 20, scale: 10, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_user_rollups", x => new { x.bucket_start, x.user_id, x.model });
                });

            migrationBuilder.CreateIndex(
                name: "IX_usage_rollups_granularity_bucket_start",
                table: "usage_rollups",
                columns: new[] { "granularity", "bucket_start" })
                .Annotation("Npgsql:IndexInclude", new[] { "device_id", "model", "requests", "input_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens", "cost_usd" });

            migrationBuilder.CreateIndex(
                name: "IX_session_rollups_last_seen",
                table: "session_rollups",
                column: "last_seen")
                .Annotation("Npgsql:IndexInclude", new[] { "first_seen", "session_id", "agent_id", "model", "requests", "input_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens", "cost_usd", "device_id", "user_email" });

            migrationBuilder.CreateIndex(
                name: "IX_user_rollups_bucket_start",
                table: "user_rollups",
                column: "bucket_start")
                .Annotation("Npgsql:IndexInclude", new[] { "user_id", "model", "requests", "input_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens", "cost_usd" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "group_rollups");

            migrationBuilder.DropTable(
                name: "model_rollups");

            migrationBuilder.DropTable(
                name: "refusal_rollups");

            migrationBuilder.DropTable(
                name: "session_rollups");

            migrationBuilder.DropTable(
                name: "ttft_rollups");

            migrationBuilder.DropTable(
                name: "user_rollups");

            migrationBuilder.DropIndex(
                name: "IX_usage_rollups_granularity_bucket_start",
                table: "usage_rollups");

            migrationBuilder.DropColumn(
                name: "parent_agent_id",
                table: "usage_events");
        }
    }
}
