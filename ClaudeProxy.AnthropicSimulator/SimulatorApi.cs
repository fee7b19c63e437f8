using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.AnthropicSimulator;

/// <summary>
/// The Anthropic API routes, with behaviour chosen per request by <c>x-sim-*</c> headers (README.md, "The
/// simulator"): status, delays, hangs, resets, mid-stream errors, split writes, gzip, usage numbers.
/// </summary>
public static class SimulatorApi
{
    /// <summary>The models it knows, as the real API lists them: newest first, each with its display name and release date.</summary>
    public static readonly (string Id, string DisplayName, string CreatedAt)[] Models =
    [
        ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z"),
        ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
        ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
        ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
        ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
    ];

    public const string SimulatorOrganizationId = "8c5e7a42-5b1d-4c0e-9a51-simulator-org";

    private static readonly string[] Words = ["Hello", " from", " the", " Anthropic", " simulator", "."];

    public static void MapSimulatorApi(this WebApplication app)
    {
        app.MapPost("/v1/messages", Messages);
        app.MapPost("/v1/messages/count_tokens", CountTokens);
        app.MapPost("/v1/complete", Complete);
        app.MapGet("/v1/models", ListModels);
        app.MapGet("/v1/models/{id}", GetModel);
        app.MapGet("/_sim/stats", (SimulatorState state) => Results.Json(new { received = state.ReceivedCount }));
        app.Map("/{**rest}", (HttpContext ctx) => WriteError(ctx, 404, "not_found_error", "Not found"));
    }

    private static async Task<SimRequest?> Accept(HttpContext ctx)
    {
        var state = ctx.RequestServices.GetRequiredService<SimulatorState>();
        var options = ctx.RequestServices.GetRequiredService<SimulatorOptions>();
        using var buffer = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in ctx.Request.Headers)
        {
            headers[name.ToLowerInvariant()] = value.ToString();
        }
        var recorded = new RecordedRequest
        {
            Method = ctx.Request.Method,
            PathAndQuery = ctx.Request.Path + ctx.Request.QueryString,
            Headers = headers,
            Body = buffer.ToArray(),
        };
        state.Record(recorded, options.RecordRequests);
        ctx.Response.OnCompleted(() =>
        {
            recorded.Aborted.TrySetResult(ctx.RequestAborted.IsCancellationRequested);
            return Task.CompletedTask;
        });
        ctx.Response.Headers["request-id"] = "req_sim_" + Guid.NewGuid().ToString("N")[..20];
        // As the real API does: the organisation the key belongs to, and a cookie from the edge in front of it.
        ctx.Response.Headers["anthropic-organization-id"] = SimulatorOrganizationId;
        ctx.Response.Headers.SetCookie = "__cf_bm=sim" + Guid.NewGuid().ToString("N")[..16] + "; path=/; HttpOnly; Secure";

        var key = ctx.Request.Headers["x-api-key"].ToString();
        if (string.IsNullOrEmpty(key) || (options.ApiKey is { } expected && key != expected))
        {
            await WriteError(ctx, 401, "authentication_error", "invalid x-api-key");
            return null;
        }

        var sim = new SimRequest(ctx, state, recorded.Body);
        if (sim.Int("x-sim-status") is int status and not 200)
        {
            await sim.Fail(status);
            return null;
        }
        if (sim.Has("x-sim-hang"))
        {
            await Task.Delay(Timeout.Infinite, ctx.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
            return null;
        }
        return sim;
    }

    private static async Task Messages(HttpContext ctx)
    {
        if (await Accept(ctx) is not { } sim)
        {
            return;
        }
        JsonNode? body;
        try
        {
            body = JsonNode.Parse(sim.Body);
        }
        catch (JsonException)
        {
            await WriteError(ctx, 400, "invalid_request_error", "body is not valid JSON");
            return;
        }
        var model = body?["model"]?.GetValue<string>() ?? "claude-sonnet-4-5-20250929";
        var stream = body?["stream"]?.GetValue<bool>() == true;
        var thinking = body?["thinking"] is not null;
        // A client that offers tools (Claude Code always does) gets plain text unless a test asks for a tool call:
        // an invented tool_use would send an agent round its loop until its rate limit stops it.
        var tools = body?["tools"] is JsonArray { Count: > 0 } && sim.Has("x-sim-tools");
        var usage = sim.Usage();
        var id = "msg_sim_" + Guid.NewGuid().ToString("N")[..20];
        var wordCount = sim.Int("x-sim-events") ?? Words.Length;

        if (!stream)
        {
            var content = new JsonArray();
            if (thinking)
            {
                content.Add(new JsonObject { ["type"] = "thinking", ["thinking"] = "Let me think.", ["signature"] = "sig_sim" });
            }
            content.Add(new JsonObject { ["type"] = "text", ["text"] = string.Concat(Enumerable.Range(0, wordCount).Select(i => Words[i % Words.Length])) });
            if (tools)
            {
                content.Add(new JsonObject { ["type"] = "tool_use", ["id"] = "toolu_sim", ["name"] = "get_weather", ["input"] = new JsonObject { ["city"] = "Paris" } });
            }
            var message = new JsonObject
            {
                ["id"] = id, ["type"] = "message", ["role"] = "assistant", ["model"] = model, ["content"] = content,
                ["stop_reason"] = tools ? "tool_use" : "end_turn", ["stop_sequence"] = null,
                ["usage"] = usage.ToJson(usage.Output),
            };
            await sim.WriteJson(message);
            return;
        }

        var events = new List<(string Name, JsonObject Data)>
        {
            ("message_start", new JsonObject
            {
                ["type"] = "message_start",
                ["message"] = new JsonObject
                {
                    ["id"] = id, ["type"] = "message", ["role"] = "assistant", ["model"] = model, ["content"] = new JsonArray(),
                    ["stop_reason"] = null, ["stop_sequence"] = null, ["usage"] = usage.ToJson(1),
                },
            }),
        };
        var index = 0;
        if (thinking)
        {
            events.Add(("content_block_start", Block(index, new JsonObject { ["type"] = "thinking", ["thinking"] = "", ["signature"] = "" })));
            events.Add(("content_block_delta", Delta(index, new JsonObject { ["type"] = "thinking_delta", ["thinking"] = "Let me think." })));
            events.Add(("content_block_delta", Delta(index, new JsonObject { ["type"] = "signature_delta", ["signature"] = "sig_sim" })));
            events.Add(("content_block_stop", new JsonObject { ["type"] = "content_block_stop", ["index"] = index }));
            index++;
        }
        events.Add(("content_block_start", Block(index, new JsonObject { ["type"] = "text", ["text"] = "" })));
        events.Add(("ping", new JsonObject { ["type"] = "ping" }));
        for (var i = 0; i < wordCount; i++)
        {
            events.Add(("content_block_delta", Delta(index, new JsonObject { ["type"] = "text_delta", ["text"] = Words[i % Words.Length] })));
        }
        events.Add(("content_block_stop", new JsonObject { ["type"] = "content_block_stop", ["index"] = index }));
        if (tools)
        {
            index++;
            events.Add(("content_block_start", Block(index, new JsonObject { ["type"] = "tool_use", ["id"] = "toolu_sim", ["name"] = "get_weather", ["input"] = new JsonObject() })));
            events.Add(("content_block_delta", Delta(index, new JsonObject { ["type"] = "input_json_delta", ["partial_json"] = "{\"city\": " })));
            events.Add(("content_block_delta", Delta(index, new JsonObject { ["type"] = "input_json_delta", ["partial_json"] = "\"Paris\"}" })));
            events.Add(("content_block_stop", new JsonObject { ["type"] = "content_block_stop", ["index"] = index }));
        }
        events.Add(("message_delta", new JsonObject
        {
            ["type"] = "message_delta",
            ["delta"] = new JsonObject { ["stop_reason"] = tools ? "tool_use" : "end_turn", ["stop_sequence"] = null },
            ["usage"] = usage.DeltaJson(),
        }));
        events.Add(("message_stop", new JsonObject { ["type"] = "message_stop" }));
        await sim.WriteStream(events);
    }

    private static JsonObject Block(int index, JsonObject block) =>
        new() { ["type"] = "content_block_start", ["index"] = index, ["content_block"] = block };

    private static JsonObject Delta(int index, JsonObject delta) =>
        new() { ["type"] = "content_block_delta", ["index"] = index, ["delta"] = delta };

    private static async Task CountTokens(HttpContext ctx)
    {
        if (await Accept(ctx) is not { } sim)
        {
            return;
        }
        await sim.WriteJson(new JsonObject { ["input_tokens"] = sim.Int("x-sim-input-tokens") ?? Math.Max(1, sim.Body.Length / 4) });
    }

    private static async Task Complete(HttpContext ctx)
    {
        if (await Accept(ctx) is not { } sim)
        {
            return;
        }
        var body = JsonNode.Parse(sim.Body);
        var model = body?["model"]?.GetValue<string>() ?? "claude-2.1";
        var id = "compl_sim_" + Guid.NewGuid().ToString("N")[..20];
        if (body?["stream"]?.GetValue<bool>() != true)
        {
            await sim.WriteJson(new JsonObject
            {
                ["type"] = "completion", ["id"] = id, ["completion"] = string.Concat(Words), ["stop_reason"] = "stop_sequence",
                ["model"] = model,
            });
            return;
        }
        var events = new List<(string, JsonObject)>();
        foreach (var word in Words)
        {
            events.Add(("completion", new JsonObject { ["type"] = "completion", ["id"] = id, ["completion"] = word, ["stop_reason"] = null, ["model"] = model }));
        }
        events.Add(("ping", new JsonObject { ["type"] = "ping" }));
        events.Add(("completion", new JsonObject { ["type"] = "completion", ["id"] = id, ["completion"] = "", ["stop_reason"] = "stop_sequence", ["model"] = model }));
        await sim.WriteStream(events);
    }

    private static async Task ListModels(HttpContext ctx)
    {
        if (await Accept(ctx) is not { } sim)
        {
            return;
        }
        // Anthropic's paging: limit 1 to 1000 (20 by default), and the page just after after_id or just before before_id.
        var query = ctx.Request.Query;
        var limit = 20;
        if (query.ContainsKey("limit") && (!int.TryParse(query["limit"], NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 1000))
        {
            await WriteError(ctx, 400, "invalid_request_error", "limit: Input should be an integer from 1 to 1000");
            return;
        }
        var ids = Models.Select(m => m.Id).ToList();
        int start, end;
        bool hasMore;
        if (query["before_id"].ToString() is { Length: > 0 } before)
        {
            end = Math.Max(0, ids.IndexOf(before));
            start = Math.Max(0, end - limit);
            hasMore = start > 0;
        }
        else
        {
            start = query["after_id"].ToString() is { Length: > 0 } after ? (ids.IndexOf(after) is var i and >= 0 ? i + 1 : ids.Count) : 0;
            end = Math.Min(ids.Count, start + limit);
            hasMore = end < ids.Count;
        }
        var page = Models[start..end];
        var data = new JsonArray([.. page.Select(m => ModelJson(m.Id))]);
        await sim.WriteJson(new JsonObject
        {
            ["data"] = data, ["has_more"] = hasMore,
            ["first_id"] = page.Length > 0 ? page[0].Id : null, ["last_id"] = page.Length > 0 ? page[^1].Id : null,
        });
    }

    private static async Task GetModel(HttpContext ctx, string id)
    {
        if (await Accept(ctx) is not { } sim)
        {
            return;
        }
        if (!Models.Any(m => m.Id == id))
        {
            await WriteError(ctx, 404, "not_found_error", $"model: {id}");
            return;
        }
        await sim.WriteJson(ModelJson(id));
    }

    private static JsonObject ModelJson(string id)
    {
        var (_, displayName, createdAt) = Models.First(m => m.Id == id);
        return new JsonObject { ["type"] = "model", ["id"] = id, ["display_name"] = displayName, ["created_at"] = createdAt };
    }

    internal static Task WriteError(HttpContext ctx, int status, string type, string message)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        if (!ctx.Response.Headers.TryGetValue("request-id", out var requestId))
        {
            requestId = "req_sim_error";
            ctx.Response.Headers["request-id"] = requestId;
        }
        var json = new JsonObject
        {
            ["type"] = "error",
            ["error"] = new JsonObject { ["type"] = type, ["message"] = message },
            ["request_id"] = requestId.ToString(),
        };
        return ctx.Response.WriteAsync(json.ToJsonString(), ctx.RequestAborted);
    }

    internal static string ErrorType(int status) => status switch
    {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };

    /// <summary>One accepted request and the behaviour its headers ask for.</summary>
    private sealed class SimRequest(HttpContext ctx, SimulatorState state, byte[] body)
    {
        public byte[] Body { get; } = body;

        public bool Has(string header) => ctx.Request.Headers.ContainsKey(header);

        public int? Int(string header) =>
            int.TryParse(ctx.Request.Headers[header].ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null;

        public SimUsage Usage() => new(
            Int("x-sim-input-tokens") ?? 25,
            Int("x-sim-output-tokens") ?? 12,
            Int("x-sim-cache-5m") ?? 0,
            Int("x-sim-cache-1h") ?? 0,
            Int("x-sim-cache-read") ?? 0,
            Int("x-sim-web-search") ?? 0,
            Int("x-sim-delta-input"));

        public async Task Fail(int status)
        {
            if (status == 429)
            {
                ctx.Response.Headers["retry-after"] = (Int("x-sim-retry-after") ?? 1).ToString(CultureInfo.InvariantCulture);
                ctx.Response.Headers["anthropic-ratelimit-requests-limit"] = "50";
                ctx.Response.Headers["anthropic-ratelimit-requests-remaining"] = "0";
            }
            if (status >= 500)
            {
                ctx.Response.Headers["x-should-retry"] = "true";
            }
            var message = status == 529 ? "Overloaded" : $"simulated {status}";
            await WriteError(ctx, status, ErrorType(status), message);
        }

        public async Task WriteJson(JsonNode json)
        {
            var bytes = Encoding.UTF8.GetBytes(json.ToJsonString());
            ctx.Response.ContentType = "application/json";
            if (Has("x-sim-gzip"))
            {
                using var compressed = new MemoryStream();
                await using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
                {
                    await gzip.WriteAsync(bytes, ctx.RequestAborted);
                }
                bytes = compressed.ToArray();
                ctx.Response.Headers.ContentEncoding = "gzip";
            }
            ctx.Response.ContentLength = bytes.Length;
            await WriteChunked(bytes, flushEach: false);
        }

        public async Task WriteStream(List<(string Name, JsonObject Data)> events)
        {
            ctx.Response.ContentType = "text/event-stream; charset=utf-8";
            ctx.Response.Headers.CacheControl = "no-cache";
            var delay = Int("x-sim-delay-ms") ?? 0;
            var resetAfter = Int("x-sim-reset-after");
            var errorAfter = Int("x-sim-error-after");
            var hangAfter = Int("x-sim-hang-after");
            var hold = ctx.Request.Headers["x-sim-hold"].ToString();
            await ctx.Response.StartAsync(ctx.RequestAborted);
            try
            {
                for (var i = 0; i < events.Count; i++)
                {
                    if (i == resetAfter)
                    {
                        ctx.Abort();
                        return;
                    }
                    if (i == hangAfter)
                    {
                        await Task.Delay(Timeout.Infinite, ctx.RequestAborted);
                    }
                    if (i == errorAfter)
                    {
                        await WriteEvent("error", new JsonObject
                        {
                            ["type"] = "error", ["error"] = new JsonObject { ["type"] = "overloaded_error", ["message"] = "Overloaded" },
                        });
                        return;
                    }
                    if (i > 0 && delay > 0)
                    {
                        await Task.Delay(delay, ctx.RequestAborted);
                    }
                    if (i == 1 && hold.Length > 0)
                    {
                        await state.Gate(hold).Task.WaitAsync(ctx.RequestAborted);
                    }
                    await WriteEvent(events[i].Name, events[i].Data);
                }
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // The client went away; Aborted records it.
            }
        }

        private Task WriteEvent(string name, JsonObject data) =>
            WriteChunked(Encoding.UTF8.GetBytes($"event: {name}\ndata: {data.ToJsonString()}\n\n"), flushEach: true);

        private async Task WriteChunked(byte[] bytes, bool flushEach)
        {
            var split = Int("x-sim-split") ?? 0;
            if (split <= 0)
            {
                await ctx.Response.Body.WriteAsync(bytes, ctx.RequestAborted);
            }
            else
            {
                for (var offset = 0; offset < bytes.Length; offset += split)
                {
                    await ctx.Response.Body.WriteAsync(bytes.AsMemory(offset, Math.Min(split, bytes.Length - offset)), ctx.RequestAborted);
                    await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
                }
            }
            if (flushEach)
            {
                await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
            }
        }
    }

    private sealed record SimUsage(int Input, int Output, int Cache5m, int Cache1h, int CacheRead, int WebSearch, int? DeltaInput)
    {
        public JsonObject ToJson(int output)
        {
            var usage = new JsonObject
            {
                ["input_tokens"] = Input,
                ["cache_creation_input_tokens"] = Cache5m + Cache1h,
                ["cache_read_input_tokens"] = CacheRead,
                ["cache_creation"] = new JsonObject { ["ephemeral_5m_input_tokens"] = Cache5m, ["ephemeral_1h_input_tokens"] = Cache1h },
                ["output_tokens"] = output,
                ["service_tier"] = "standard",
            };
            if (WebSearch > 0)
            {
                usage["server_tool_use"] = new JsonObject { ["web_search_requests"] = WebSearch, ["web_fetch_requests"] = 0 };
            }
            return usage;
        }

        public JsonObject DeltaJson()
        {
            var usage = new JsonObject { ["output_tokens"] = Output };
            if (DeltaInput is int input)
            {
                usage["input_tokens"] = input;
                usage["cache_creation_input_tokens"] = Cache5m + Cache1h;
                usage["cache_read_input_tokens"] = CacheRead;
            }
            if (WebSearch > 0)
            {
                usage["server_tool_use"] = new JsonObject { ["web_search_requests"] = WebSearch };
            }
            return usage;
        }
    }
}
