namespace Microsoft.Extensions.Hosting;

/// <summary>The meters and activity sources every service exports.</summary>
public static class TelemetryNames
{
    public const string GatewayMeter = "ClaudeProxy.Gateway";
    public const string GatewayActivitySource = "ClaudeProxy.Gateway";
    public const string YarpActivitySource = "Yarp.ReverseProxy";

    public static readonly string[] Meters = [GatewayMeter, "Yarp.ReverseProxy", "Npgsql", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel", "System.Net.Http"];
    public static readonly string[] ActivitySources = [GatewayActivitySource, YarpActivitySource, "Npgsql", "StackExchange.Redis"];
}
