using System.Buffers;
using System.Globalization;
using System.Text.Json;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>
/// The page of <c>GET /v1/models</c> a caller asks for, with Anthropic's paging: <c>limit</c> from 1 to 1000 (20 when
/// absent), and the page just after <c>after_id</c> or just before <c>before_id</c>.
/// </summary>
public readonly record struct ModelPage(int Limit, string? AfterId, string? BeforeId)
{
    public const int DefaultLimit = 20;
    public const int MaxLimit = 1000;

    /// <summary>The query parameters that choose a page; the gateway answers them itself, so they never go upstream.</summary>
    public static readonly string[] Parameters = ["limit", "after_id", "before_id"];

    /// <summary>Reads the page from the query; on failure says what is wrong, in the words of Anthropic's own validation.</summary>
    public static bool TryRead(IQueryCollection query, out ModelPage page, out string? error)
    {
        page = default;
        foreach (var name in Parameters)
        {
            if (query[name].Count > 1)
            {
                error = $"{name}: give it at most once";
                return false;
            }
        }
        var limit = DefaultLimit;
        if (query.TryGetValue("limit", out var raw)
            && (!int.TryParse(raw.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxLimit))
        {
            error = $"limit: Input should be a whole number from 1 to {MaxLimit}";
            return false;
        }
        string? after = query.TryGetValue("after_id", out var a) ? a.ToString() : null;
        string? before = query.TryGetValue("before_id", out var b) ? b.ToString() : null;
        if (after is not null && before is not null)
        {
            error = "after_id and before_id cannot both be given";
            return false;
        }
        page = new ModelPage(limit, after, before);
        error = null;
        return true;
    }
}

/// <summary>
/// Turns Anthropic's list of models into the list a caller may see: only the models its allowlist lets it use, in
/// Anthropic's order, paged as it asked, with <c>has_more</c>, <c>first_id</c> and <c>last_id</c> describing that
/// page. Each model object passes as Anthropic wrote it. A cursor that names no model the caller can see gives an
/// empty page, so a model outside the allowlist cannot be told from one that does not exist.
/// </summary>
public static class ModelList
{
    /// <summary>Writes the caller's page; false when <paramref name="upstream"/> is not a list of models.</summary>
    public static bool TryWrite(ReadOnlyMemory<byte> upstream, ModelAllowlist allowlist, ModelPage page, IBufferWriter<byte> output) =>
        TryWrite(upstream, allowlist.Allows, page, output);

    /// <summary>Writes the caller's page of the models <paramref name="allows"/> lets through; false when <paramref name="upstream"/> is not a list of models.</summary>
    public static bool TryWrite(ReadOnlyMemory<byte> upstream, Func<string, bool> allows, ModelPage page, IBufferWriter<byte> output)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(upstream);
        }
        catch (JsonException)
        {
            return false;
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
            {
                return false;
            }
            var visible = new List<(string Id, JsonElement Model)>();
            foreach (var model in data.EnumerateArray())
            {
                if (model.ValueKind == JsonValueKind.Object && model.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String
                    && id.GetString() is { } name && allows(name))
                {
                    visible.Add((name, model));
                }
            }
            var (start, end, hasMore) = Slice(visible, page);
            using var writer = new Utf8JsonWriter(output);
            writer.WriteStartObject();
            writer.WriteStartArray("data");
            for (var i = start; i < end; i++)
            {
                visible[i].Model.WriteTo(writer);
            }
            writer.WriteEndArray();
            writer.WriteBoolean("has_more", hasMore);
            WriteId(writer, "first_id", end > start ? visible[start].Id : null);
            WriteId(writer, "last_id", end > start ? visible[end - 1].Id : null);
            writer.WriteEndObject();
            return true;
        }
    }

    /// <summary>Which of the visible models the page holds, and whether more lie beyond it in the direction it was asked for.</summary>
    private static (int Start, int End, bool HasMore) Slice(List<(string Id, JsonElement Model)> visible, ModelPage page)
    {
        if (page.BeforeId is { } before)
        {
            var end = visible.FindIndex(m => m.Id == before);
            if (end < 0)
            {
                return (0, 0, false);
            }
            var start = Math.Max(0, end - page.Limit);
            return (start, end, start > 0);
        }
        var first = 0;
        if (page.AfterId is { } after)
        {
            var at = visible.FindIndex(m => m.Id == after);
            if (at < 0)
            {
                return (0, 0, false);
            }
            first = at + 1;
        }
        var last = Math.Min(visible.Count, first + page.Limit);
        return (first, last, last < visible.Count);
    }

    private static void WriteId(Utf8JsonWriter writer, string name, string? id)
    {
        if (id is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, id);
        }
    }
}
