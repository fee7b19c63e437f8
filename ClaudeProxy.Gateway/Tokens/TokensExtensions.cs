using ClaudeProxy.Gateway.Data;

namespace ClaudeProxy.Gateway.Tokens;

public static class TokensExtensions
{
    /// <summary>
    /// Tokens, and the device records and standing behind them: in Postgres, with the standing cache on the request
    /// path, when it is configured; otherwise the configured default policy for every device, all in good standing.
    /// </summary>
    public static IHostApplicationBuilder AddTokens(this IHostApplicationBuilder builder)
    {
        var backing = builder.AddBackingServices();
        builder.Services.AddSingleton(BootstrapOptions.Load(builder.Configuration, backing));
        builder.Services.AddSingleton<TokenService>();
        builder.Services.AddSingleton<DeviceAuthenticator>();
        builder.Services.AddSingleton<NonceStore>();
        // The default policy, which device records start from too.
        builder.Services.AddSingleton<ConfiguredDeviceDirectory>();
        if (backing.Postgres)
        {
            builder.Services.AddSingleton<IDeviceDirectory, PostgresDeviceDirectory>();
            builder.Services.AddSingleton<DeviceStandingCache>();
            builder.Services.AddSingleton<IDeviceStanding>(sp => sp.GetRequiredService<DeviceStandingCache>());
            builder.Services.AddSingleton<Limits.IDeviceStandingSource>(sp => sp.GetRequiredService<DeviceStandingCache>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<DeviceStandingCache>());
        }
        else
        {
            builder.Services.AddSingleton<IDeviceDirectory>(sp => sp.GetRequiredService<ConfiguredDeviceDirectory>());
            builder.Services.AddSingleton<IDeviceStanding, AlwaysInGoodStanding>();
        }
        return builder;
    }
}
