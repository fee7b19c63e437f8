using ClaudeProxy.Contracts;

using System.Text.Json.Nodes;
using ClaudeProxy.Gateway.Forwarding;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Telemetry;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// Turns what this instance notices about its surroundings into events: the upstream circuit breaker opening and
/// closing, and Redis lost and back (its heartbeat failing and working again). Postgres episodes are raised by the
/// usage writer, which is the first to notice them.
/// </summary>
public sealed class OutageEvents(GatewayEvents events, UpstreamCircuitBreaker breaker, BackgroundHealth health, Configuration.BackingServices backing)
    : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        breaker.StateChanged += OnBreaker;
        if (backing.Redis)
        {
            health.Changed += OnHealth;
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        breaker.StateChanged -= OnBreaker;
        health.Changed -= OnHealth;
        return Task.CompletedTask;
    }

    private void OnBreaker(string state)
    {
        var type = state switch
        {
            "open" => EventTypes.CircuitBreakerOpened,
            "closed" => EventTypes.CircuitBreakerClosed,
            _ => null,
        };
        if (type is not null)
        {
            var data = new JsonObject { ["instance"] = events.Instance, ["open_until"] = breaker.OpenUntil };
            events.Raise(type, data);
        }
    }

    private void OnHealth(string service, bool failing)
    {
        if (service == GatewayInstances.Service)
        {
            events.Outage("redis", failing, failing ? health.Snapshot().FirstOrDefault(s => s.Service == service)?.Reason : null);
        }
    }
}
