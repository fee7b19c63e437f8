using System.Net;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests;

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
