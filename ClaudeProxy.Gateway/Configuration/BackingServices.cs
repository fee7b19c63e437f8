namespace ClaudeProxy.Gateway.Configuration;

/// <summary>
/// Which backing services this process is configured with. Each concern reads it to choose its implementations:
/// device records, spend history and the usage writer with Postgres, in-process stand-ins without; shared limits
/// with Redis. Registered as a singleton by <see cref="Microsoft.Extensions.Hosting.BackingServiceExtensions.AddBackingServices"/>.
/// </summary>
public sealed record BackingServices(bool Postgres, bool Redis);
