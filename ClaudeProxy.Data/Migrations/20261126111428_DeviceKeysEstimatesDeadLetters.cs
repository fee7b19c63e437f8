using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace ClaudeProxy.Gateway.Data.Migrations
{
    /// <inheritdoc />
    public partial class DeviceKeysEstimatesDeadLetters : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<bool>(
                name: "cost_estimated",
                table: "usage_events",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.AddColumn<bool>(
                name: "output_estimated",
                table: "usage_events",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.AddColumn<string>(
                name: "key_algorithm",
                table: "devices",
                type: "character varying(16)",
                maxLength: 16,
                nullable: true);

            migrationBuilder.AddColumn<DateTimeOffset>(
                name: "key_enrolled_at",
                table: "devices",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "public_key",
                table: "devices",
                type: "character varying(512)",
                maxLength: 512,
                nullable: true);

            migrationBuilder.CreateTable(
                name: "usage_dead_letters",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    time = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    event_id = table.Column<Guid>(type: "uuid", nullable: true),
                    source = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    payload = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_usage_dead_letters", x => x.id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_usage_dead_letters_time",
                table: "usage_dead_letters",
                column: "time");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "usage_dead_letters");

            migrationBuilder.DropColumn(
                name: "cost_estimated",
                table: "usage_events");

            migrationBuilder.DropColumn(
                name: "output_estimated",
                table: "usage_events");

            migrationBuilder.DropColumn(
                name: "key_algorithm",
                table: "devices");

            migrationBuilder.DropColumn(
                name: "key_enrolled_at",
                table: "devices");

            migrationBuilder.DropColumn(
                name: "public_key",
                table: "devices");
        }
    }
}
