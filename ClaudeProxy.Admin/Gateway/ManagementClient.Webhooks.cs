using ClaudeProxy.Contracts;

namespace ClaudeProxy.Admin.Gateway;

/// <summary>Webhooks: endpoints, their delivery log, test sends and resends.</summary>
public sealed partial class ManagementClient
{
    public Task<PageOf<WebhookView>> WebhooksAsync(CancellationToken ct = default) => GetAsync<PageOf<WebhookView>>("/manage/v1/webhooks?page_size=200", ct);

    /// <summary>Creates an endpoint; the answer holds its secret in full, the only time it is shown.</summary>
    public Task<WebhookView> CreateWebhookAsync(NewWebhook webhook, CancellationToken ct = default) =>
        SendAsync<WebhookView>(HttpMethod.Post, "/manage/v1/webhooks", webhook, ct);

    public Task<WebhookView> UpdateWebhookAsync(string id, WebhookUpdate update, CancellationToken ct = default) =>
        SendAsync<WebhookView>(HttpMethod.Put, $"/manage/v1/webhooks/{Uri.EscapeDataString(id)}", update, ct);

    public Task DeleteWebhookAsync(string id, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Delete, $"/manage/v1/webhooks/{Uri.EscapeDataString(id)}", null, ct);

    public Task<WebhookSendResult> TestWebhookAsync(string id, CancellationToken ct = default) =>
        SendAsync<WebhookSendResult>(HttpMethod.Post, $"/manage/v1/webhooks/{Uri.EscapeDataString(id)}/test", null, ct);

    public Task<PageOf<WebhookDeliveryView>> WebhookDeliveriesAsync(string id, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageOf<WebhookDeliveryView>>($"/manage/v1/webhooks/{Uri.EscapeDataString(id)}/deliveries?page={page}&page_size={pageSize}", ct);

    public Task<WebhookSendResult> ResendDeliveryAsync(long deliveryId, CancellationToken ct = default) =>
        SendAsync<WebhookSendResult>(HttpMethod.Post, $"/manage/v1/webhooks/deliveries/{deliveryId}/resend", null, ct);
}
