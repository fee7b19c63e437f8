using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Playwright;

namespace ClaudeProxy.Tests.Events;

/// <summary>The Webhooks page in Debian's Chromium, against the real gateway, Redis and PostgreSQL and a real receiver.</summary>
public sealed class WebhooksBrowserTests(StackFixture fx) : IClassFixture<StackFixture>, IAsyncLifetime
{
    private GatewayHost _gateway = null!;
    private AdminBrowser _admin = null!;

    public async Task InitializeAsync()
    {
        _gateway = await fx.GatewayAsync(await fx.Postgres.CreateDatabaseAsync(), s =>
        {
            s["ADMIN_API_KEY"] = TestSecrets.OperatorKey;
            (s["WEBHOOK_POLL_MS"], s["WEBHOOK_RETRY_INITIAL_MS"], s["WEBHOOK_RETRY_MAX_MS"]) = ("200", "100", "300");
        });
        _admin = await AdminBrowser.StartAsync(_gateway);
    }

    public Task DisposeAsync() => _admin.DisposeAsync().AsTask();

    private static ILocator Field(IPage page, string testId) =>
        page.Locator($"input[data-testid={testId}], [data-testid={testId}] input").First;

    /// <summary>Waits until the gateway's log shows the delivery of <paramref name="eventId"/> as <paramref name="status"/> with <paramref name="attempts"/> attempts.</summary>
    private async Task WaitForDeliveryAsync(string eventId, string status, int attempts)
    {
        using var manage = new HttpClient { BaseAddress = _gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var webhooks = await manage.GetFromJsonAsync<JsonElement>("/manage/v1/webhooks");
        var id = webhooks.GetProperty("data")[0].GetProperty("webhook_id").GetString();
        while (true)
        {
            var deliveries = (await manage.GetFromJsonAsync<JsonElement>($"/manage/v1/webhooks/{id}/deliveries"))!.GetProperty("data").EnumerateArray();
            if (deliveries.Any(d => d.GetProperty("event_id").GetString() == eventId && d.GetProperty("status").GetString() == status &&
                d.GetProperty("attempts").GetInt32() == attempts))
            {
                return;
            }
            await Task.Delay(50, cts.Token);
        }
    }

    [Fact]
    public async Task An_operator_creates_a_webhook_sends_a_test_sees_it_delivered_resends_it_and_deletes_the_webhook()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var page = await _admin.SignedInPageAsync("/webhooks");
        await Assertions.Expect(page.GetByTestId("empty")).ToContainTextAsync("No webhooks yet");

        await Field(page, "new-url").FillAsync(receiver.Url.ToString());
        await Field(page, "new-description").FillAsync("Operations channel");
        await page.GetByTestId("create-webhook").ClickAsync();
        await Assertions.Expect(page.GetByTestId("secret-value")).ToContainTextAsync("whsec_");
        var secret = (await page.GetByTestId("secret-value").InnerTextAsync()).Trim();
        // The list shows the secret masked; the whole one only in the notice above.
        await Assertions.Expect(page.GetByTestId("webhooks")).ToContainTextAsync("whsec_…" + secret[^4..]);
        await AdminBrowser.ShotAsync(page, "webhooks-created");

        await page.GetByTestId("send-test").ClickAsync();
        // The endpoint takes every event: an outage noticed meanwhile may arrive too.
        var test = await receiver.NextOfAsync("webhook.test");
        Assert.True(test.SignedWith(secret), "the test delivery verifies with the secret the page showed");
        await WaitForDeliveryAsync(test.Id, "delivered", 1);
        await page.GetByTestId("refresh-deliveries").ClickAsync();
        var row = page.GetByTestId("delivery-row").Filter(new LocatorFilterOptions { HasText = test.Id });
        await Assertions.Expect(row.GetByTestId("delivery-status")).ToHaveTextAsync("delivered");
        await Assertions.Expect(row.GetByTestId("delivery-attempts")).ToHaveTextAsync("1");
        await AdminBrowser.ShotAsync(page, "webhooks-delivered");

        await row.GetByTestId("resend").ClickAsync();
        var again = await receiver.NextOfAsync("webhook.test");
        Assert.Equal(test.Id, again.Id);
        await WaitForDeliveryAsync(test.Id, "delivered", 2);
        await page.GetByTestId("refresh-deliveries").ClickAsync();
        await Assertions.Expect(row.GetByTestId("delivery-attempts")).ToHaveTextAsync("2");
        await Assertions.Expect(row.GetByTestId("delivery-status")).ToHaveTextAsync("delivered");
        await AdminBrowser.ShotAsync(page, "webhooks-resent");

        await page.GetByTestId("delete").ClickAsync();
        await page.Locator(".mud-dialog").GetByRole(AriaRole.Button, new LocatorGetByRoleOptions { Name = "Delete", Exact = true }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("empty")).ToContainTextAsync("No webhooks yet");
    }
}
