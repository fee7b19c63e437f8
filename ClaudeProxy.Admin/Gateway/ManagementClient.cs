using System.Net.Http.Json;
using System.Text.Json;

namespace ClaudeProxy.Admin.Gateway;

public sealed record DeviceDto(string DeviceId, string? AppVersion, string UserId, string OrgId, string Status, List<string> Models, int RateLimit,
    int? TokenLimit, decimal? SpendCap, int PolicyVersion, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, decimal SpentThisPeriod,
    string? KeyAlgorithm = null, DateTimeOffset? KeyEnrolledAt = null, string? KeyFingerprint = null);

public sealed record PageDto<T>(List<T> Data, int Page, int PageSize, int Total);

public sealed record SeriesPointDto(DateTimeOffset Bucket, string Model, long Requests, long InputTokens, long OutputTokens, long CacheReadTokens, decimal CostUsd);

public sealed record UsageTotalDto(string Key, long Requests, long Errors, long InputTokens, long OutputTokens, long CacheWriteTokens, long CacheReadTokens, decimal CostUsd);

public sealed record SessionDto(string SessionId, string DeviceId, DateTimeOffset FirstSeen, DateTimeOffset LastSeen, long Requests, long InputTokens, long OutputTokens, decimal CostUsd);

public sealed record EventDto(Guid Id, DateTimeOffset Time, string DeviceId, string? SessionId, string Model, string Endpoint, int Status, bool Streamed,
    long InputTokens, long OutputTokens, long CacheWrite5mTokens, long CacheWrite1hTokens, long CacheReadTokens, decimal? CostUsd, double LatencyMs,
    double? TimeToFirstByteMs, bool Cancelled, string? UpstreamRequestId, string CorrelationId, bool CostEstimated = false, bool OutputEstimated = false);

public sealed record OverviewDto(decimal SpendToday, decimal SpendThisMonth, long RequestsToday, long ErrorsToday, double ErrorRateToday, int PendingApprovals,
    int Devices, List<UsageTotalDto> TopDevices, List<SeriesPointDto> SpendByDay, int DeadLetters = 0);

public sealed record AuditDto(long Id, DateTimeOffset Time, string Actor, string Action, string Target, string? Before, string? After);

public sealed record BreakerDto(string State, DateTimeOffset Since, DateTimeOffset? OpenUntil, long RecentFailures, long RecentSuccesses);

public sealed record GatewayDto(string Id, string Host, int ProcessId, DateTimeOffset StartedAt, DateTimeOffset LastSeen, BreakerDto Breaker);

public sealed record PolicyDto(List<string> Models, int RateLimit, int? TokenLimit, decimal? SpendCap);

public sealed record UsageFilter(DateTimeOffset? From = null, DateTimeOffset? To = null, string? Device = null, string? Model = null, string? Session = null)
{
    public string Query()
    {
        var parts = new List<string>();
        if (From is { } f) parts.Add("from=" + Uri.EscapeDataString(f.UtcDateTime.ToString("o")));
        if (To is { } t) parts.Add("to=" + Uri.EscapeDataString(t.UtcDateTime.ToString("o")));
        if (!string.IsNullOrWhiteSpace(Device)) parts.Add("device=" + Uri.EscapeDataString(Device.Trim()));
        if (!string.IsNullOrWhiteSpace(Model)) parts.Add("model=" + Uri.EscapeDataString(Model.Trim()));
        if (!string.IsNullOrWhiteSpace(Session)) parts.Add("session=" + Uri.EscapeDataString(Session.Trim()));
        return string.Join('&', parts);
    }
}

/// <summary>A failure of the management API, with the message it gave.</summary>
public sealed class ManagementException(string message) : Exception(message);

/// <summary>The gateway's management API, as the admin app uses it. Every call carries the operator key.</summary>
public sealed class ManagementClient(HttpClient http)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public Task<OverviewDto> OverviewAsync(CancellationToken ct = default) => GetAsync<OverviewDto>("/manage/v1/overview", ct);

    public Task<PageDto<DeviceDto>> DevicesAsync(string? search, string? status, string sort, bool descending, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageDto<DeviceDto>>($"/manage/v1/devices?search={Uri.EscapeDataString(search ?? "")}&status={Uri.EscapeDataString(status ?? "")}" +
            $"&sort={sort}&order={(descending ? "desc" : "asc")}&page={page}&page_size={pageSize}", ct);

    public Task<DeviceDto> DeviceAsync(string id, CancellationToken ct = default) => GetAsync<DeviceDto>($"/manage/v1/devices/{Uri.EscapeDataString(id)}", ct);

    public Task<DeviceDto> ActAsync(string id, string action, CancellationToken ct = default) =>
        SendAsync<DeviceDto>(HttpMethod.Post, $"/manage/v1/devices/{Uri.EscapeDataString(id)}/{action}", null, ct);

    /// <summary>Forgets the device's enrolled key: its next bootstrap may enrol a new one, and its current tokens must refresh.</summary>
    public Task<DeviceDto> ResetKeyAsync(string id, CancellationToken ct = default) =>
        SendAsync<DeviceDto>(HttpMethod.Post, $"/manage/v1/devices/{Uri.EscapeDataString(id)}/reset-key", null, ct);

    public Task<DeviceDto> UpdatePolicyAsync(string id, PolicyDto policy, CancellationToken ct = default) =>
        SendAsync<DeviceDto>(HttpMethod.Put, $"/manage/v1/devices/{Uri.EscapeDataString(id)}/policy", policy, ct);

    public Task<PageDto<AuditDto>> AuditAsync(string id, CancellationToken ct = default) =>
        GetAsync<PageDto<AuditDto>>($"/manage/v1/devices/{Uri.EscapeDataString(id)}/audit?page_size=50", ct);

    public Task<List<SeriesPointDto>> SeriesAsync(UsageFilter filter, string granularity, CancellationToken ct = default) =>
        GetAsync<List<SeriesPointDto>>($"/manage/v1/usage/timeseries?granularity={granularity}&{filter.Query()}", ct);

    public Task<List<UsageTotalDto>> ByModelAsync(UsageFilter filter, CancellationToken ct = default) =>
        GetAsync<List<UsageTotalDto>>($"/manage/v1/usage/by-model?{filter.Query()}", ct);

    public Task<PageDto<SessionDto>> SessionsAsync(UsageFilter filter, CancellationToken ct = default) =>
        GetAsync<PageDto<SessionDto>>($"/manage/v1/usage/sessions?page_size=50&{filter.Query()}", ct);

    public Task<PageDto<EventDto>> EventsAsync(UsageFilter filter, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageDto<EventDto>>($"/manage/v1/usage/events?page={page}&page_size={pageSize}&{filter.Query()}", ct);

    public Task<Stream> ExportCsvAsync(UsageFilter filter, CancellationToken ct = default) => http.GetStreamAsync($"/manage/v1/usage/export.csv?{filter.Query()}", ct);

    public Task<List<GatewayDto>> GatewaysAsync(CancellationToken ct = default) => GetAsync<List<GatewayDto>>("/manage/v1/gateways", ct);

    public async Task ResetBreakersAsync(CancellationToken ct = default)
    {
        using var response = await http.PostAsync("/manage/v1/gateways/circuit-breaker/reset", null, ct);
        await EnsureAsync(response, ct);
    }

    private async Task<T> GetAsync<T>(string path, CancellationToken ct) => await SendAsync<T>(HttpMethod.Get, path, null, ct);

    private async Task<T> SendAsync<T>(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType(), options: Json);
        }
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, ct);
        }
        catch (HttpRequestException)
        {
            throw new ManagementException("The gateway's management API cannot be reached.");
        }
        using (response)
        {
            await EnsureAsync(response, ct);
            return (await response.Content.ReadFromJsonAsync<T>(Json, ct))!;
        }
    }

    private static async Task EnsureAsync(HttpResponseMessage response, CancellationToken ct)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        string message;
        try
        {
            using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
            message = error.RootElement.GetProperty("error").GetProperty("message").GetString() ?? response.ReasonPhrase ?? "error";
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            message = $"The management API answered {(int)response.StatusCode}.";
        }
        throw new ManagementException(message);
    }
}

/// <summary>Adds the operator key and the signed-in operator's name to every management call.</summary>
public sealed class OperatorKeyHandler(AdminOptions options) : DelegatingHandler
{
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        request.Headers.Authorization = new("Bearer", options.OperatorKey);
        request.Headers.TryAddWithoutValidation("x-operator", options.Username);
        return base.SendAsync(request, cancellationToken);
    }
}

public static class ExportEndpoints
{
    /// <summary>CSV download for a signed-in operator: streamed from the management API, so the key stays on the server.</summary>
    public static void MapExportEndpoints(this WebApplication app) =>
        app.MapGet("/export/usage.csv", async (HttpContext context, ManagementClient client, DateTimeOffset? from, DateTimeOffset? to, string? device,
            string? model, string? session) =>
        {
            context.Response.ContentType = "text/csv; charset=utf-8";
            context.Response.Headers.ContentDisposition = "attachment; filename=\"usage.csv\"";
            await using var csv = await client.ExportCsvAsync(new UsageFilter(from, to, device, model, session), context.RequestAborted);
            await csv.CopyToAsync(context.Response.Body, context.RequestAborted);
        });
}
