namespace ClaudeProxy.Gateway.Limits;

public static class LimitsExtensions
{
    public static IHostApplicationBuilder AddLimits(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<InMemoryRateLimiter>();
        builder.Services.AddSingleton<IRateLimiter>(sp => sp.GetRequiredService<InMemoryRateLimiter>());
        return builder;
    }
}
