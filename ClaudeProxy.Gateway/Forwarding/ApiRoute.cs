namespace ClaudeProxy.Gateway.Forwarding;

/// <summary>The Anthropic endpoints the gateway serves and meters.</summary>
public enum ApiRoute
{
    Messages,
    CountTokens,
    Complete,
    Models,
}

public static class ApiRouteExtensions
{
    public static bool HasBody(this ApiRoute route) => route is not ApiRoute.Models;

    public static string Name(this ApiRoute route) => route switch
    {
        ApiRoute.Messages => "messages",
        ApiRoute.CountTokens => "count_tokens",
        ApiRoute.Complete => "complete",
        _ => "models",
    };
}
