namespace ClaudeProxy.Gateway.Tokens;

/// <summary>Model globs such as <c>claude-sonnet-*</c>; <c>*</c> matches any run of characters and <c>?</c> one.</summary>
public sealed class ModelAllowlist(IReadOnlyList<string> patterns)
{
    public IReadOnlyList<string> Patterns { get; } = patterns;

    public bool Allows(string model)
    {
        foreach (var pattern in Patterns)
        {
            if (Glob(pattern, model))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Iterative glob match with backtracking on the last star: linear in practice, no allocation.</summary>
    public static bool Glob(ReadOnlySpan<char> pattern, ReadOnlySpan<char> text)
    {
        int p = 0, t = 0, star = -1, mark = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == text[t]))
            {
                p++;
                t++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = t;
            }
            else if (star >= 0)
            {
                p = star + 1;
                t = ++mark;
            }
            else
            {
                return false;
            }
        }
        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }
        return p == pattern.Length;
    }
}
