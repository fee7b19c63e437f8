using System.Net;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Telemetry;

public sealed class HealthTests(ProxyFixture fx) : IClassFixture<ProxyFixture>
{
    [Theory]
    [InlineData("/healthz")]
    [InlineData("/readyz")]
    public async Task Health_endpoints_answer_without_a_token(string path)
    {
        using var response = await fx.Gateway.Client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("Healthy", json.RootElement.GetProperty("status").GetString());
    }
}

public sealed class NoDatabaseTests(ProxyFixture fx) : IClassFixture<ProxyFixture>
{
    [Fact]
    public async Task Without_postgres_readyz_and_the_start_log_say_usage_is_in_memory()
    {
        using var response = await fx.Gateway.Client.GetAsync("/readyz");
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("kept in memory", text);
        Assert.Contains(fx.Gateway.Logs.Lines, l => l.Contains("No Postgres configured"));
    }

    [Fact]
    public async Task Without_postgres_device_endpoints_serve_from_memory()
    {
        var token = await fx.Gateway.BootstrapAsync(TestSecrets.DeviceId());
        using (var r = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token))) { }
        using var usage = await fx.Gateway.Client.SendAsync(Http.Get("/admin/usage", bearer: token));
        Assert.Contains("\"total\":1", await usage.Content.ReadAsStringAsync());
    }
}
