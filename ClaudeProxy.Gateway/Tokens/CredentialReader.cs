namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// The client's credential: <c>Authorization: Bearer</c> (ANTHROPIC_AUTH_TOKEN, and the C# SDK's ApiKey) or
/// <c>x-api-key</c> (ANTHROPIC_API_KEY); an apiKeyHelper sends both.
/// </summary>
public static class CredentialReader
{
    public static string? Read(HttpRequest request)
    {
        var authorization = request.Headers.Authorization.ToString();
        if (authorization.Length > 7 && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return authorization[7..].Trim();
        }
        var apiKey = request.Headers["x-api-key"].ToString();
        return apiKey.Length > 0 ? apiKey.Trim() : null;
    }
}
