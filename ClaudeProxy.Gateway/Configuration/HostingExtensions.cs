using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace ClaudeProxy.Gateway.Configuration;

public static class HostingExtensions
{
    /// <summary>Reads and validates the settings (throwing <see cref="GatewayConfigurationException"/>) and sets up Kestrel, logging and CORS.</summary>
    public static GatewayOptions AddGatewayHosting(this WebApplicationBuilder builder)
    {
        var options = GatewayOptions.Load(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);

        var urlsConfigured = !string.IsNullOrEmpty(builder.Configuration["urls"]) || !string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"]);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = Math.Max(options.MaxPayloadSize + 1, 1024 * 1024);
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromMinutes(5);
            if (options.Port is not null || !urlsConfigured)
            {
                var port = options.Port ?? 3001;
                if (options.Host is "0.0.0.0" or "*")
                {
                    kestrel.ListenAnyIP(port);
                }
                else if (options.Host == "localhost")
                {
                    kestrel.ListenLocalhost(port);
                }
                else
                {
                    kestrel.Listen(IPAddress.Parse(options.Host), port, o => o.Protocols = HttpProtocols.Http1AndHttp2);
                }
            }
        });

        if (builder.Configuration["LOG_LEVEL"] is { Length: > 0 } level)
        {
            builder.Logging.SetMinimumLevel(ParseLevel(level));
        }
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Yarp", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.None);
        builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);

        if (options.CorsOrigins.Count > 0)
        {
            builder.Services.AddCors(cors => cors.AddDefaultPolicy(policy =>
            {
                if (options.CorsOrigins.Contains("*"))
                {
                    policy.AllowAnyOrigin();
                }
                else
                {
                    policy.WithOrigins([.. options.CorsOrigins]);
                }
                policy.AllowAnyHeader().AllowAnyMethod()
                    .WithExposedHeaders("request-id", "x-request-id", "retry-after", "anthropic-ratelimit-requests-limit",
                        "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset");
            }));
        }
        return options;
    }

    public static LogLevel ParseLevel(string level) => level.Trim().ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" or "information" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "fatal" or "critical" => LogLevel.Critical,
        "silent" or "none" => LogLevel.None,
        _ => throw new GatewayConfigurationException("LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent."),
    };
}
