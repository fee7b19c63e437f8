using System.Net;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Admin;

/// <summary>The usage explorer marks rows whose cost or output the gateway estimated, in Debian's Chromium.</summary>
public sealed class EstimatedUsageBrowserTests(StackFixture fx) : IClassFixture<StackFixture>
{
    [Fact]
    public async Task Estimated_costs_and_outputs_are_marked_in_the_usage_explorer()
    {
        var gateway = await AdminBrowser.GatewayAsync(fx, await fx.Postgres.CreateDatabaseAsync());
        var token = await gateway.BootstrapAsync(TestSecrets.DeviceId());
        using (var unpriced = await gateway.Client.SendAsync(Http.Post("/v1/messages", """{"model":"claude-mystery-9","max_tokens":10,"messages":[]}""", bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, unpriced.StatusCode);
        }
        using (var cut = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.StreamMessage, bearer: token, headers: ("x-sim-error-after", "5"))))
        {
            Assert.Equal(HttpStatusCode.OK, cut.StatusCode);
            await cut.Content.ReadAsStringAsync();
        }
        using (var plain = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        }
        await StackFixture.StoredAsync(gateway, 3);

        await using var admin = await AdminBrowser.StartAsync(gateway);
        var page = await admin.SignedInPageAsync("/usage");

        var rows = page.Locator("[data-testid=events] tbody tr");
        await Assertions.Expect(rows).ToHaveCountAsync(3);
        var unpricedRow = rows.Filter(new LocatorFilterOptions { HasText = "claude-mystery-9" });
        await Assertions.Expect(unpricedRow.GetByTestId("cost-estimated")).ToHaveTextAsync("estimated");
        await Assertions.Expect(unpricedRow.GetByTestId("output-estimated")).ToHaveCountAsync(0);
        await Assertions.Expect(page.GetByTestId("output-estimated")).ToHaveCountAsync(1);
        await Assertions.Expect(page.GetByTestId("cost-estimated")).ToHaveCountAsync(1);
        await AdminBrowser.ShotAsync(page, "usage-estimated");
    }
}
