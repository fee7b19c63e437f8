using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ClaudeProxy.Data.Migrations
{
    /// <inheritdoc />
    public partial class UsageGroupIds : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "group_ids",
                table: "usage_events",
                type: "text",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "group_ids",
                table: "usage_events");
        }
    }
}
