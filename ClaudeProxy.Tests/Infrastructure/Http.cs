using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace ClaudeProxy.Tests.Infrastructure;

public static class Http
{
    public const string SmallMessage = """{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}""";
    public const string StreamMessage = """{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}""";

    public static HttpRequestMessage Post(string path, string body, string? bearer = null, string? apiKey = null, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body)) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        Decorate(request, bearer, apiKey, headers);
        return request;
    }

    public static HttpRequestMessage Get(string path, string? bearer = null, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        Decorate(request, bearer, null, headers);
        return request;
    }

    private static void Decorate(HttpRequestMessage request, string? bearer, string? apiKey, (string Name, string Value)[] headers)
    {
        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }
        if (apiKey is not null)
        {
            request.Headers.TryAddWithoutValidation("x-api-key", apiKey);
        }
        request.Headers.TryAddWithoutValidation("anthropic-version", "2023-06-01");
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
    }

    /// <summary>Asserts Anthropic's error shape and returns the error's type and message.</summary>
    public static async Task<(string Type, string Message)> AssertErrorAsync(HttpResponseMessage response, int status, string type)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        Assert.Equal("error", json.RootElement.GetProperty("type").GetString());
        var error = json.RootElement.GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        var requestId = json.RootElement.GetProperty("request_id").GetString();
        Assert.False(string.IsNullOrEmpty(requestId));
        Assert.Equal(requestId, response.Headers.GetValues("request-id").Single());
        return (type, error.GetProperty("message").GetString()!);
    }

    /// <summary>The next server-sent event of a stream, its lines joined with newlines; empty at the end.</summary>
    public static async Task<string> ReadEventAsync(StreamReader reader)
    {
        var builder = new StringBuilder();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0 && builder.Length > 0)
            {
                return builder.ToString();
            }
            builder.Append(line).Append('\n');
        }
        return builder.ToString();
    }
}
