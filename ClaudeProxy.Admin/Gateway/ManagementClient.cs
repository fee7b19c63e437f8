using System.Net.Http.Json;
using System.Text.Json;
using ClaudeProxy.Contracts;
using Microsoft.AspNetCore.Components.Authorization;

namespace ClaudeProxy.Admin.Gateway;

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

/// <summary>
/// The gateway's management API, as the admin app uses it. Every call carries the operator key, and a call made from
/// a page carries the signed-in operator's name for the audit trail.
/// </summary>
public sealed partial class ManagementClient(HttpClient http, AuthenticationStateProvider signedIn)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public Task<Overview> OverviewAsync(CancellationToken ct = default) => GetAsync<Overview>("/manage/v1/overview", ct);

    public Task<PageOf<DeviceView>> DevicesAsync(string? search, string? status, string sort, bool descending, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageOf<DeviceView>>($"/manage/v1/devices?search={Uri.EscapeDataString(search ?? "")}&status={Uri.EscapeDataString(status ?? "")}" +
            $"&sort={sort}&order={(descending ? "desc" : "asc")}&page={page}&page_size={pageSize}", ct);

    public Task<DeviceView> DeviceAsync(string id, CancellationToken ct = default) => GetAsync<DeviceView>($"/manage/v1/devices/{Uri.EscapeDataString(id)}", ct);

    public Task<DeviceView> ActAsync(string id, string action, CancellationToken ct = default) =>
        SendAsync<DeviceView>(HttpMethod.Post, $"/manage/v1/devices/{Uri.EscapeDataString(id)}/{action}", null, ct);

    /// <summary>Forgets the device's enrolled key: its next bootstrap may enrol a new one, and its current tokens must refresh.</summary>
    public Task<DeviceView> ResetKeyAsync(string id, CancellationToken ct = default) =>
        SendAsync<DeviceView>(HttpMethod.Post, $"/manage/v1/devices/{Uri.EscapeDataString(id)}/reset-key", null, ct);

    public Task<DeviceView> UpdatePolicyAsync(string id, PolicyUpdate policy, CancellationToken ct = default) =>
        SendAsync<DeviceView>(HttpMethod.Put, $"/manage/v1/devices/{Uri.EscapeDataString(id)}/policy", policy, ct);

    public Task<PageOf<AuditView>> AuditAsync(string id, CancellationToken ct = default) =>
        GetAsync<PageOf<AuditView>>($"/manage/v1/devices/{Uri.EscapeDataString(id)}/audit?page_size=50", ct);

    public Task<List<SeriesPoint>> SeriesAsync(UsageFilter filter, string granularity, CancellationToken ct = default) =>
        GetAsync<List<SeriesPoint>>($"/manage/v1/usage/timeseries?granularity={granularity}&{filter.Query()}", ct);

    public Task<List<UsageTotal>> ByModelAsync(UsageFilter filter, CancellationToken ct = default) =>
        GetAsync<List<UsageTotal>>($"/manage/v1/usage/by-model?{filter.Query()}", ct);

    public Task<PageOf<SessionView>> SessionsAsync(UsageFilter filter, CancellationToken ct = default) =>
        GetAsync<PageOf<SessionView>>($"/manage/v1/usage/sessions?page_size=50&{filter.Query()}", ct);

    public Task<PageOf<EventView>> EventsAsync(UsageFilter filter, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageOf<EventView>>($"/manage/v1/usage/events?page={page}&page_size={pageSize}&{filter.Query()}", ct);

    public Task<Stream> ExportCsvAsync(UsageFilter filter, CancellationToken ct = default) => http.GetStreamAsync($"/manage/v1/usage/export.csv?{filter.Query()}", ct);

    public Task<PageOf<UserView>> UsersAsync(string? search, string? status, string sort, bool descending, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageOf<UserView>>($"/manage/v1/users?search={Uri.EscapeDataString(search ?? "")}&status={Uri.EscapeDataString(status ?? "")}" +
            $"&sort={sort}&order={(descending ? "desc" : "asc")}&page={page}&page_size={pageSize}", ct);

    /// <summary>Deactivates (<c>deactivate</c>) or reactivates (<c>reactivate</c>) a person.</summary>
    public Task<UserView> UserActAsync(string id, string action, CancellationToken ct = default) =>
        SendAsync<UserView>(HttpMethod.Post, $"/manage/v1/users/{Uri.EscapeDataString(id)}/{action}", null, ct);

    /// <summary>The people whose groups claim names <paramref name="group"/>: the members of the idp group of that name.</summary>
    public Task<PageOf<UserView>> UsersInGroupAsync(string group, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageOf<UserView>>($"/manage/v1/users?group={Uri.EscapeDataString(group)}&sort=email&order=asc&page={page}&page_size={pageSize}", ct);

    /// <summary>The policy a person's requests are admitted under, with the rule each part comes from and the cap that binds.</summary>
    public Task<EffectivePolicyView> UserPolicyAsync(string userId, CancellationToken ct = default) =>
        GetAsync<EffectivePolicyView>($"/manage/v1/users/{Uri.EscapeDataString(userId)}/policy", ct);

    public Task<PageOf<GroupView>> GroupsAsync(string? search, int page, int pageSize, CancellationToken ct = default) =>
        GetAsync<PageOf<GroupView>>($"/manage/v1/groups?search={Uri.EscapeDataString(search ?? "")}&page={page}&page_size={pageSize}", ct);

    public Task<GroupView> GroupAsync(string id, CancellationToken ct = default) => GetAsync<GroupView>($"/manage/v1/groups/{Uri.EscapeDataString(id)}", ct);

    public Task<GroupView> CreateGroupAsync(NewGroup group, CancellationToken ct = default) => SendAsync<GroupView>(HttpMethod.Post, "/manage/v1/groups", group, ct);

    public Task<GroupView> UpdateGroupPolicyAsync(string id, GroupPolicy policy, CancellationToken ct = default) =>
        SendAsync<GroupView>(HttpMethod.Put, $"/manage/v1/groups/{Uri.EscapeDataString(id)}/policy", policy, ct);

    /// <summary>Deletes a group with its members, managed settings and caps.</summary>
    public Task DeleteGroupAsync(string id, CancellationToken ct = default) => SendAsync(HttpMethod.Delete, $"/manage/v1/groups/{Uri.EscapeDataString(id)}", null, ct);

    public Task<GroupView> AddGroupMemberAsync(string id, string deviceId, CancellationToken ct = default) =>
        SendAsync<GroupView>(HttpMethod.Post, $"/manage/v1/groups/{Uri.EscapeDataString(id)}/members", new NewGroupMember(deviceId), ct);

    public Task RemoveGroupMemberAsync(string id, string deviceId, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Delete, $"/manage/v1/groups/{Uri.EscapeDataString(id)}/members/{Uri.EscapeDataString(deviceId)}", null, ct);

    /// <summary>Every group's spend this period against its pool and member caps.</summary>
    public Task<List<GroupSpendView>> GroupsSpendAsync(CancellationToken ct = default) => GetAsync<List<GroupSpendView>>("/manage/v1/groups/spend", ct);

    public Task<GroupSpendView> GroupSpendAsync(string id, CancellationToken ct = default) =>
        GetAsync<GroupSpendView>($"/manage/v1/groups/{Uri.EscapeDataString(id)}/spend", ct);

    /// <summary>Sets (or, with null, removes) a group's cap on each member and on its pool.</summary>
    public Task<GroupSpendView> SetGroupCapsAsync(string id, GroupCaps caps, CancellationToken ct = default) =>
        SendAsync<GroupSpendView>(HttpMethod.Put, $"/manage/v1/groups/{Uri.EscapeDataString(id)}/caps", caps, ct);

    /// <summary>The managed-settings document of <paramref name="scope"/> (<c>everyone</c> or a group id) as indented JSON; null when none is set.</summary>
    public async Task<string?> ManagedSettingsAsync(string scope, CancellationToken ct = default)
    {
        using var response = await RawAsync(HttpMethod.Get, $"/manage/v1/managed-settings/{Uri.EscapeDataString(scope)}", null, ct);
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            // A 404 also answers an unknown group; the caller has read the group first.
            return null;
        }
        await EnsureAsync(response, ct);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        return JsonSerializer.Serialize(document.RootElement.GetProperty("settings"), Indented);
    }

    /// <summary>Replaces the managed-settings document of <paramref name="scope"/>; the gateway refuses anything but a JSON object.</summary>
    public async Task SetManagedSettingsAsync(string scope, string json, CancellationToken ct = default)
    {
        using var content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        using var response = await RawAsync(HttpMethod.Put, $"/manage/v1/managed-settings/{Uri.EscapeDataString(scope)}", content, ct);
        await EnsureAsync(response, ct);
    }

    public async Task RemoveManagedSettingsAsync(string scope, CancellationToken ct = default)
    {
        using var response = await RawAsync(HttpMethod.Delete, $"/manage/v1/managed-settings/{Uri.EscapeDataString(scope)}", null, ct);
        if (response.StatusCode != System.Net.HttpStatusCode.NotFound)
        {
            await EnsureAsync(response, ct);
        }
    }

    public Task<List<GatewayInstance>> GatewaysAsync(CancellationToken ct = default) => GetAsync<List<GatewayInstance>>("/manage/v1/gateways", ct);

    public async Task ResetBreakersAsync(CancellationToken ct = default)
    {
        using var response = await http.PostAsync("/manage/v1/gateways/circuit-breaker/reset", null, ct);
        await EnsureAsync(response, ct);
    }

    private async Task<T> GetAsync<T>(string path, CancellationToken ct) => await SendAsync<T>(HttpMethod.Get, path, null, ct);

    private async Task<T> SendAsync<T>(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        using var response = await RawAsync(method, path, body is null ? null : JsonContent.Create(body, body.GetType(), options: Json), ct);
        await EnsureAsync(response, ct);
        return (await response.Content.ReadFromJsonAsync<T>(Json, ct))!;
    }

    private async Task SendAsync(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        using var response = await RawAsync(method, path, body is null ? null : JsonContent.Create(body, body.GetType(), options: Json), ct);
        await EnsureAsync(response, ct);
    }

    private async Task<HttpResponseMessage> RawAsync(HttpMethod method, string path, HttpContent? content, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path);
        if (await OperatorAsync() is { } name)
        {
            request.Headers.TryAddWithoutValidation("x-operator", name);
        }
        request.Content = content;
        try
        {
            return await http.SendAsync(request, ct);
        }
        catch (HttpRequestException)
        {
            throw new ManagementException("The gateway's management API cannot be reached.");
        }
    }

    /// <summary>The signed-in operator's name as a header value (ASCII, at most 128 characters); null outside a page.</summary>
    private async Task<string?> OperatorAsync()
    {
        string? name;
        try
        {
            name = (await signedIn.GetAuthenticationStateAsync()).User.Identity?.Name;
        }
        catch (InvalidOperationException)
        {
            // Outside a Blazor circuit (the CSV download) no authentication state is set; those calls change nothing.
            return null;
        }
        if (string.IsNullOrEmpty(name))
        {
            return null;
        }
        if (!name.All(c => c is >= ' ' and <= '~'))
        {
            name = Uri.EscapeDataString(name);
        }
        return name.Length <= 128 ? name : name[..128];
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

/// <summary>Adds the operator key to every management call.</summary>
public sealed class OperatorKeyHandler(AdminOptions options) : DelegatingHandler
{
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        request.Headers.Authorization = new("Bearer", options.OperatorKey);
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
