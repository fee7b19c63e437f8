using System.Net;
using Yarp.ReverseProxy.Forwarder;

namespace ClaudeProxy.Benchmarks;

/// <summary>
/// YARP's <see cref="IHttpForwarder"/> with an upstream client configured like the gateway's and nothing else: no
/// authentication, limits, usage tap or logging. What this adds over the direct path is the floor for any gateway
/// built on it, so the benchmark reports it beside the gateway's figures.
/// </summary>
public static class BareForwarder
{
    public static async Task RunAsync(string url, string destination)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        builder.Services.AddHttpForwarder();
        await using var app = builder.Build();
        using var invoker = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = null,
        });
        var forwarder = app.Services.GetRequiredService<IHttpForwarder>();
        var config = new ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromMinutes(10) };
        app.Map("/{**rest}", async context => await forwarder.SendAsync(context, destination, invoker, config, HttpTransformer.Empty));
        await app.RunAsync();
    }
}
