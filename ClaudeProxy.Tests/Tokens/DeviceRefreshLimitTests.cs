using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;

namespace ClaudeProxy.Tests.Tokens;

/// <summary>Its own class, so its own Redis: the per-address budget it counts is shared by every gateway on one Redis.</summary>
public sealed class DeviceRefreshLimitTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private static async Task TokenAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        Assert.False(string.IsNullOrEmpty(json.RootElement.GetProperty("wrapper_token").GetString()));
    }

    [Fact]
    public async Task Refresh_is_limited_per_device_so_a_noisy_address_blocks_no_other_device()
    {
        var gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s => s["BOOTSTRAP_RATE_LIMIT"] = "3");
        var noisy = await gateway.BootstrapAsync(TestSecrets.DeviceId("noisy"));
        var quiet = await gateway.BootstrapAsync(TestSecrets.DeviceId("quiet"));
        for (var i = 0; i < 3; i++)
        {
            using var ok = await gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: noisy));
            await TokenAsync(ok);
        }
        using (var limited = await gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: noisy)))
        {
            var (_, message) = await Http.AssertErrorAsync(limited, 429, "rate_limit_error");
            Assert.Contains("this device", message);
        }
        // The address has used its bootstrap budget (3) with the third bootstrap; the next one is refused...
        using (var third = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = TestSecrets.DeviceId("third") }))
        {
            await TokenAsync(third);
        }
        using (var fourth = await gateway.Client.PostAsJsonAsync("/bootstrap", new { device_id = TestSecrets.DeviceId("fourth") }))
        {
            await Http.AssertErrorAsync(fourth, 429, "rate_limit_error");
        }
        // ...and the quiet device, from the same address, still refreshes.
        using var quietRefresh = await gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: quiet));
        await TokenAsync(quietRefresh);
    }
}
