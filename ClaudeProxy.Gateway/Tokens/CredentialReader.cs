namespace ClaudeProxy.Gateway.Tokens;

/// <summary>
/// The client's credential: <c>Authorization: Bearer</c> (ANTHROPIC_AUTH_TOKEN, and the C# SDK's ApiKey) or
/// <c>x-api-key</c> (ANTHROPIC_API_KEY); an apiKeyHelper sends both.
/// </summary>
public static class CredentialReader
{
    public static string? Read(HttpRequest request)
    {
        var credential = ReadSpan(request);
        return credential.IsEmpty ? null : credential.ToString();
    }

    /// <summary>The credential where it sits in its header, without a copy; empty when there is none.</summary>
    public static ReadOnlySpan<char> ReadSpan(HttpRequest request)
    {
        var authorization = request.Headers.Authorization.ToString();
        if (authorization.Length > 7 && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return authorization.AsSpan(7).Trim();
        }
        return request.Headers["x-api-key"].ToString().AsSpan().Trim();
    }
}
