namespace ClaudeProxy.Gateway.Usage;

/// <summary>Where usage events go. Enqueue never waits for the database.</summary>
public interface IUsageSink
{
    void Enqueue(UsageEvent usage);
}
