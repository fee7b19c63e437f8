using ClaudeProxy.Gateway.Configuration;
using S = ClaudeProxy.Settings.SettingsCatalogue;

namespace ClaudeProxy.Gateway.Events;

/// <summary>How webhook deliveries are polled for, retried and bounded (the <c>WEBHOOK_*</c> settings).</summary>
public sealed class WebhookOptions
{
    public TimeSpan Poll { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan RetryInitial { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan RetryMax { get; init; } = TimeSpan.FromHours(1);
    public TimeSpan RetryWindow { get; init; } = TimeSpan.FromHours(24);
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a claimed delivery is held before another instance may take it: longer than an attempt can last.</summary>
    public TimeSpan Lease => Timeout * 2 + TimeSpan.FromSeconds(5);

    public static WebhookOptions From(IConfiguration configuration)
    {
        var settings = configuration.Settings();
        return new WebhookOptions
        {
            Poll = TimeSpan.FromMilliseconds(settings.Number(S.WebhookPollMs)),
            RetryInitial = TimeSpan.FromMilliseconds(settings.Number(S.WebhookRetryInitialMs)),
            RetryMax = TimeSpan.FromMilliseconds(settings.Number(S.WebhookRetryMaxMs)),
            RetryWindow = TimeSpan.FromHours(settings.Number(S.WebhookRetryHours)),
            Timeout = TimeSpan.FromSeconds(settings.Number(S.WebhookTimeoutSeconds)),
        };
    }

    /// <summary>The wait after the <paramref name="attempts"/>-th failed attempt: doubling from the first, capped.</summary>
    public TimeSpan RetryAfter(int attempts)
    {
        var ms = RetryInitial.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempts - 1, 0, 30));
        return TimeSpan.FromMilliseconds(Math.Min(ms, RetryMax.TotalMilliseconds));
    }
}
