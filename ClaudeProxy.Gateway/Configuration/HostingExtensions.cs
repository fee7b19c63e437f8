using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Gateway.Configuration;

public static class HostingExtensions
{
    /// <summary>Reads and validates the settings (throwing <see cref="GatewayConfigurationException"/>) and sets up Kestrel, logging and CORS.</summary>
    public static GatewayOptions AddGatewayHosting(this WebApplicationBuilder builder)
    {
        var options = GatewayOptions.Load(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);
        // The web server stops first and waits for requests in flight (a stream may run for minutes); the usage writer
        // drains after it. Both share this one deadline, after which Kestrel cuts what is left and the writer spools.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.ShutdownTimeout);

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = Math.Max(options.MaxPayloadSize + 1, 1024 * 1024);
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromMinutes(5);
            // A body that trickles in holds a connection and a buffer: below this rate, once the grace is over, it is cut.
            kestrel.Limits.MinRequestBodyDataRate = new MinDataRate(options.MinRequestBodyBytesPerSecond, options.MinRequestBodyGrace);
            Listen(kestrel, options.Host, options.Port ?? PortFromUrls(builder.Configuration) ?? int.Parse(S.Port.Default!, CultureInfo.InvariantCulture), management: false);
            Listen(kestrel, options.Host, options.ManagementPort, management: true);
        });

        var settings = builder.Configuration.Settings();
        if (settings.IsSet(S.LogLevel))
        {
            builder.Logging.SetMinimumLevel(ParseLevel(settings.Text(S.LogLevel)!));
        }
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // Hosting writes nothing above Information, yet while its logger is enabled at all it starts an Activity for
        // every request (for log scopes), and the forwarding client then carries it: with traces recorded the Activity
        // exists anyway, without them it is pure cost.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        builder.Logging.AddFilter("Yarp", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.None);
        builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);

        if (options.TrustedProxies.Count > 0)
        {
            builder.Services.BelieveForwardedHeadersFrom(options.TrustedProxies);
        }

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

    /// <summary>
    /// The proxy and the management API listen on separate ports, so an ingress can expose the proxy alone. Each
    /// connection is marked with the port it came in on; <see cref="ManagementPort.IsManagement"/> reads the mark.
    /// </summary>
    private static void Listen(KestrelServerOptions kestrel, string host, int port, bool management)
    {
        void Configure(ListenOptions listen)
        {
            listen.Protocols = HttpProtocols.Http1AndHttp2;
            listen.Use(next => connection =>
            {
                connection.Items[ManagementPort.ItemKey] = management;
                return next(connection);
            });
        }
        if (host is "0.0.0.0" or "*" or "+")
        {
            kestrel.ListenAnyIP(port, Configure);
        }
        else if (host == "localhost")
        {
            kestrel.ListenLocalhost(port, Configure);
        }
        else
        {
            kestrel.Listen(IPAddress.Parse(host), port, Configure);
        }
    }

    /// <summary>The port of the first of <c>ASPNETCORE_URLS</c> / <c>--urls</c>, as an Aspire AppHost sets it.</summary>
    private static int? PortFromUrls(ConfigurationManager configuration)
    {
        var settings = configuration.Settings();
        var urls = settings.Raw(S.Urls) ?? settings.Raw(S.AspNetCoreUrls);
        var first = urls?.Split(';', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        return first is not null && Uri.TryCreate(first.Replace("://*", "://localhost").Replace("://+", "://localhost"), UriKind.Absolute, out var uri)
            ? uri.Port
            : null;
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
        _ => throw new GatewayConfigurationException($"{S.LogLevel.Name} must be one of trace, debug, info, warn, error, fatal, silent."),
    };
}
