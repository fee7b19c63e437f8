using Microsoft.Extensions.DependencyInjection.Extensions;

namespace ClaudeProxy.Gateway.Tokens;

public static class TokensExtensions
{
    public static IHostApplicationBuilder AddTokens(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<TokenService>();
        builder.Services.AddSingleton<DeviceAuthenticator>();
        builder.Services.AddSingleton<NonceStore>();
        builder.Services.TryAddSingleton<IDeviceStanding, AlwaysInGoodStanding>();
        builder.Services.AddSingleton<ConfiguredDeviceDirectory>();
        builder.Services.TryAddSingleton<IDeviceDirectory>(sp => sp.GetRequiredService<ConfiguredDeviceDirectory>());
        return builder;
    }
}
