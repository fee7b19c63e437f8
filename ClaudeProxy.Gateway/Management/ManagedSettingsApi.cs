using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ClaudeProxy.Gateway.Data;
using Microsoft.EntityFrameworkCore;

namespace ClaudeProxy.Gateway.Management;

/// <summary>
/// Claude Code's managed settings, one document for everyone and one per group. A caller's document is everyone's,
/// then each of their groups' in group-name order, merged: objects merge key by key, anything else (arrays included)
/// is replaced by the later document's value.
/// </summary>
public static partial class ManagedSettingsApi
{
    public const int MaxBytes = 64 * 1024;
    public const int MaxDepth = 32;

    [GeneratedRegex(@"^grp_[a-z0-9]{16}\z")]
    private static partial Regex GroupIdPattern();

    public static bool IsGroupId(string? id) => id is not null && GroupIdPattern().IsMatch(id);

    public static RouteGroupBuilder MapManagedSettingsApi(this RouteGroupBuilder api)
    {
        var settings = api.MapGroup("/managed-settings").WithTags("Managed settings");
        settings.MapGet("/{scope}", GetAsync).WithSummary("Claude Code's managed settings for everyone or for one group");
        settings.MapPut("/{scope}", PutAsync).WithSummary("Set Claude Code's managed settings for everyone or for one group");
        settings.MapDelete("/{scope}", DeleteAsync).WithSummary("Remove Claude Code's managed settings for everyone or for one group");
        return api;
    }

    private static async Task<bool> CheckScopeAsync(string scope, HttpContext context, GatewayDbContext db)
    {
        if (scope != ManagedSettingsRecord.Everyone && !IsGroupId(scope))
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "the scope is 'everyone' or a group id: grp_ and 16 lower-case letters or digits");
            return false;
        }
        if (scope != ManagedSettingsRecord.Everyone && !await db.Groups.AnyAsync(g => g.GroupId == scope, context.RequestAborted))
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no group '{scope}'");
            return false;
        }
        return true;
    }

    private static async Task GetAsync(string scope, HttpContext context, ManagementContext m)
    {
        await using var db = await m.Contexts.CreateDbContextAsync(context.RequestAborted);
        if (!await CheckScopeAsync(scope, context, db))
        {
            return;
        }
        var record = await db.ManagedSettings.AsNoTracking().FirstOrDefaultAsync(s => s.Scope == scope, context.RequestAborted);
        if (record is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no managed settings for '{scope}'");
            return;
        }
        await WriteRecordAsync(context, record);
    }

    private static async Task WriteRecordAsync(HttpContext context, ManagedSettingsRecord record)
    {
        var body = new JsonObject
        {
            ["scope"] = record.Scope,
            ["settings"] = JsonNode.Parse(record.Settings),
            ["updated_at"] = record.UpdatedAt,
            ["updated_by"] = record.UpdatedBy,
        };
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted);
    }

    private static async Task PutAsync(string scope, HttpContext context, ManagementContext m)
    {
        var ct = context.RequestAborted;
        if (scope != ManagedSettingsRecord.Everyone && !IsGroupId(scope))
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "the scope is 'everyone' or a group id: grp_ and 16 lower-case letters or digits");
            return;
        }
        if (context.Request.ContentLength > MaxBytes)
        {
            await Errors.ApiErrors.WriteAsync(context, 413, $"managed settings are at most {MaxBytes} bytes");
            return;
        }
        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await context.Request.Body.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + read > MaxBytes)
            {
                await Errors.ApiErrors.WriteAsync(context, 413, $"managed settings are at most {MaxBytes} bytes");
                return;
            }
            buffer.Write(chunk, 0, read);
        }
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(buffer.ToArray(), documentOptions: new JsonDocumentOptions { MaxDepth = MaxDepth });
        }
        catch (JsonException)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, $"managed settings must be a JSON object, nested at most {MaxDepth} deep");
            return;
        }
        if (node is not JsonObject settings)
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "managed settings must be a JSON object");
            return;
        }
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (!await CheckScopeAsync(scope, context, db))
        {
            return;
        }
        var record = await db.ManagedSettings.FirstOrDefaultAsync(s => s.Scope == scope, ct);
        var before = record?.Settings;
        var text = settings.ToJsonString();
        if (record is null)
        {
            record = new ManagedSettingsRecord { Scope = scope, Settings = text };
            db.ManagedSettings.Add(record);
        }
        record.Settings = text;
        record.UpdatedAt = m.Time.GetUtcNow();
        record.UpdatedBy = context.Request.Headers["x-operator"].ToString() is { Length: > 0 and <= 128 } name ? name : "api";
        m.Audit(db, context, "managed_settings", scope, before is null ? null : JsonNode.Parse(before), settings);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (e.InnerException is Npgsql.PostgresException { SqlState: Npgsql.PostgresErrorCodes.UniqueViolation })
        {
            await Errors.ApiErrors.WriteAsync(context, 409, "invalid_request_error", $"the managed settings for '{scope}' were set by a concurrent call: read them and try again");
            return;
        }
        await WriteRecordAsync(context, record);
    }

    private static async Task DeleteAsync(string scope, HttpContext context, ManagementContext m)
    {
        var ct = context.RequestAborted;
        await using var db = await m.Contexts.CreateDbContextAsync(ct);
        if (scope != ManagedSettingsRecord.Everyone && !IsGroupId(scope))
        {
            await Errors.ApiErrors.WriteAsync(context, 400, "the scope is 'everyone' or a group id: grp_ and 16 lower-case letters or digits");
            return;
        }
        var record = await db.ManagedSettings.FirstOrDefaultAsync(s => s.Scope == scope, ct);
        if (record is null)
        {
            await Errors.ApiErrors.WriteAsync(context, 404, "not_found_error", $"no managed settings for '{scope}'");
            return;
        }
        db.ManagedSettings.Remove(record);
        m.Audit(db, context, "managed_settings_delete", scope, JsonNode.Parse(record.Settings), null);
        await db.SaveChangesAsync(ct);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    /// <summary>
    /// The caller's merged document, or null when none applies: everyone's, then the groups of the person (by the
    /// provider's claim) and the manual groups holding the device, in group-name order.
    /// </summary>
    public static async Task<JsonObject?> EffectiveAsync(GatewayDbContext db, string deviceId, CancellationToken ct)
    {
        var userId = UserRecord.UserIdOf(deviceId);
        var claimed = userId is null
            ? []
            : await db.Users.AsNoTracking().Where(u => u.UserId == userId).Select(u => u.Groups).FirstOrDefaultAsync(ct) ?? [];
        var groups = await db.Groups.AsNoTracking()
            .Where(g => (g.Source == GroupRecord.FromProvider && claimed.Contains(g.Name))
                        || (g.Source == GroupRecord.Manual && db.GroupMembers.Any(x => x.GroupId == g.GroupId && x.DeviceId == deviceId)))
            .Select(g => new { g.GroupId, g.Name })
            .ToListAsync(ct);
        var scopes = groups.Select(g => g.GroupId).Append(ManagedSettingsRecord.Everyone).ToList();
        var documents = await db.ManagedSettings.AsNoTracking().Where(s => scopes.Contains(s.Scope)).ToDictionaryAsync(s => s.Scope, s => s.Settings, ct);
        if (documents.Count == 0)
        {
            return null;
        }
        var merged = new JsonObject();
        var order = groups.OrderBy(g => g.Name, StringComparer.Ordinal).Select(g => g.GroupId).Prepend(ManagedSettingsRecord.Everyone);
        foreach (var scope in order)
        {
            if (documents.TryGetValue(scope, out var text) && JsonNode.Parse(text) is JsonObject document)
            {
                Merge(merged, document);
            }
        }
        return merged;
    }

    /// <summary>Objects merge key by key; any other value, arrays included, replaces what was there.</summary>
    public static void Merge(JsonObject target, JsonObject source)
    {
        foreach (var (key, value) in source.ToList())
        {
            source.Remove(key);
            if (value is JsonObject inner && target[key] is JsonObject existing)
            {
                Merge(existing, inner);
            }
            else
            {
                target[key] = value;
            }
        }
    }

    /// <summary>
    /// The document with keys sorted (ordinal, as JavaScript sorts them) at every level and no whitespace; strings
    /// escaped only where JSON requires it, as <c>JSON.stringify</c> writes them.
    /// </summary>
    public static string Canonical(JsonNode? node)
    {
        using var output = new MemoryStream();
        using (var writer = new Utf8JsonWriter(output, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, MaxDepth = MaxDepth + 1 }))
        {
            Write(writer, node);
        }
        return Encoding.UTF8.GetString(output.ToArray());
    }

    private static void Write(Utf8JsonWriter writer, JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                writer.WriteStartObject();
                foreach (var (key, value) in o.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(key);
                    Write(writer, value);
                }
                writer.WriteEndObject();
                break;
            case JsonArray a:
                writer.WriteStartArray();
                foreach (var item in a)
                {
                    Write(writer, item);
                }
                writer.WriteEndArray();
                break;
            case null:
                writer.WriteNullValue();
                break;
            default:
                node.WriteTo(writer);
                break;
        }
    }

    /// <summary><c>sha256:</c> and the lower-case hex SHA-256 of the canonical document.</summary>
    public static string Checksum(string canonical) =>
        "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical)));

    /// <summary>A UUID (version 8 layout) from the checksum's first 16 bytes, so the same document keeps the same id.</summary>
    public static Guid UuidOf(string checksum)
    {
        var bytes = Convert.FromHexString(checksum["sha256:".Length..][..32]);
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x80);
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80);
        return new Guid(bytes, bigEndian: true);
    }
}
