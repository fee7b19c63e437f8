using System.Globalization;
using System.Net;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Telemetry;

public sealed class MetricsFixture : ProxyFixture
{
    public string OperatorKey { get; } = "operator-key-" + Guid.NewGuid().ToString("N");

    protected override void Configure(Dictionary<string, string?> settings) => settings["ADMIN_API_KEY"] = OperatorKey;
}

/// <summary>
/// <c>/metrics</c> on the management port: what Prometheus scrapes and a HorizontalPodAutoscaler scales on
/// (ASP.NET Core's requests in flight), never on the proxy port, and never a secret.
/// </summary>
public sealed class MetricsEndpointTests(MetricsFixture fx) : IClassFixture<MetricsFixture>
{
    private async Task<string> ScrapeAsync()
    {
        using var client = new HttpClient { BaseAddress = fx.Gateway.ManagementUrl, Timeout = TimeSpan.FromSeconds(15) };
        using var response = await client.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.ToString());
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>The samples of the metric named <paramref name="name"/> (labels ignored).</summary>
    private static List<double> Samples(string text, string name) =>
        [.. text.Split('\n')
            .Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal))
            .Select(l => l[(l.LastIndexOf('}') is var end and >= 0 ? end + 1 : name.Length)..].Trim().Split(' ')[0])
            .Select(v => double.Parse(v, CultureInfo.InvariantCulture))];

    [Fact]
    public async Task After_a_proxied_request_the_management_port_exports_requests_in_flight_and_the_gateways_own_metrics()
    {
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId("metrics"));
        using (var answer = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token, headers: ("x-sim-output-tokens", "7"))))
        {
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }

        // A stream held open upstream is a request in flight: the number the autoscaler reads counts it.
        var gate = "metrics-" + Guid.NewGuid().ToString("N");
        using var held = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-sim-hold", gate)),
            HttpCompletionOption.ResponseHeadersRead).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.OK, held.StatusCode);
        string text;
        try
        {
            text = await ScrapeAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            fx.Simulator.State.Release(gate);
        }
        await held.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30));

        // The held stream and the scrape itself.
        Assert.True(Samples(text, "http_server_active_requests").Sum() >= 2, text);
        Assert.True(Samples(text, "claudeproxy_requests_admitted_total").Sum() >= 2, text);
        Assert.Contains("# TYPE http_server_active_requests gauge", text);
        Assert.Contains("# TYPE claudeproxy_requests_admitted_total counter", text);
        Assert.Contains("gen_ai_client_token_usage", text);
        Assert.Contains("http_server_request_duration_seconds_bucket", text);
    }

    [Fact]
    public async Task The_tokens_and_the_cost_of_a_request_are_exported_for_a_scraper()
    {
        // A model id of this test alone (Sonnet's prices: 3 and 15 dollars a million), so no other request adds to its series.
        var model = "claude-sonnet-4-metrics-" + Guid.NewGuid().ToString("N")[..8];
        using var capture = new MetricCapture(fx.Gateway.Services);
        var costed = capture.RecordedAsync("claudeproxy.usage.cost", tags => Equals(tags.GetValueOrDefault("gen_ai.request.model"), model));
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId("metrics"));
        var body = $$"""{"model":"{{model}}","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}""";
        using (var answer = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", body, bearer: token,
            headers: [("x-sim-input-tokens", "1000"), ("x-sim-output-tokens", "7")])))
        {
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }
        await costed.WaitAsync(TimeSpan.FromSeconds(30));

        var text = await ScrapeAsync();
        var ofModel = text.Split('\n').Where(l => l.Contains($"gen_ai_request_model=\"{model}\"", StringComparison.Ordinal)).ToList();
        double Sample(string prefix, string? with = null) => ofModel
            .Where(l => l.StartsWith(prefix, StringComparison.Ordinal) && (with is null || l.Contains(with, StringComparison.Ordinal)))
            .Select(l => double.Parse(l[(l.LastIndexOf('}') + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture))
            .Single();
        // 1,000 input tokens at 3 dollars a million and 7 output tokens at 15: 0.003105 dollars.
        Assert.Equal(0.003105, Sample("claudeproxy_usage_cost"), 9);
        Assert.Equal(1000, Sample("gen_ai_client_token_usage_sum", "gen_ai_token_type=\"input\""));
        Assert.Equal(7, Sample("gen_ai_client_token_usage_sum", "gen_ai_token_type=\"output\""));
        Assert.Equal(1, Sample("gen_ai_client_token_usage_count", "gen_ai_token_type=\"input\""));
    }

    [Fact]
    public async Task The_proxy_port_does_not_serve_metrics()
    {
        using var response = await fx.Gateway.Client.GetAsync("/metrics");
        await Http.AssertErrorAsync(response, 404, "not_found_error");
        using var nested = await fx.Gateway.Client.GetAsync("/metrics/anything");
        await Http.AssertErrorAsync(nested, 404, "not_found_error");
    }

    [Fact]
    public async Task The_export_holds_no_secret()
    {
        var token = TokenForge.Make(fx.JwtSecret, deviceId: TestSecrets.DeviceId("metrics"));
        using (var answer = await fx.Gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }
        var text = await ScrapeAsync();
        Assert.DoesNotContain(fx.MasterKey, text);
        Assert.DoesNotContain(fx.JwtSecret, text);
        Assert.DoesNotContain(fx.OperatorKey, text);
        Assert.DoesNotContain(token, text);
    }
}
