using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace ClaudeProxy.Gateway.Data;

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without starting the gateway or reaching a database.</summary>
public sealed class DesignTimeFactory : IDesignTimeDbContextFactory<GatewayDbContext>
{
    public GatewayDbContext CreateDbContext(string[] args)
    {
        var options = new DbContextOptionsBuilder<GatewayDbContext>().UseNpgsql("Host=localhost;Database=claudeproxy");
        GatewayDbContext.UseGatewayNaming(options);
        return new(options.Options);
    }
}
