namespace ClaudeProxy.Settings;

/// <summary>Which process reads a setting.</summary>
[Flags]
public enum SettingComponent
{
    Gateway = 1,
    AdminApp = 2,
    Both = Gateway | AdminApp,
}

/// <summary>How a setting's value is read (see <see cref="SettingsReader"/>).</summary>
public enum SettingKind
{
    Text,
    Secret,
    Number,
    Size,
    Boolean,
    Choice,
    List,
    Networks,
}

/// <summary>
/// One environment variable: its name, what it means, which process reads it, how it is read and what holds when it
/// is not set. <see cref="Default"/> is written as one would set it and read by the same parser as a set value.
/// </summary>
public sealed record Setting(string Name, SettingComponent Component, SettingKind Kind, string Description)
{
    /// <summary>The value that applies when the variable is not set; null when there is none.</summary>
    public string? Default { get; init; }

    /// <summary>What not setting it means when there is no <see cref="Default"/> ("unset (no cap)").</summary>
    public string? WhenUnset { get; init; }

    public bool Required { get; init; }

    /// <summary>For numbers: the smallest and largest value accepted.</summary>
    public double Min { get; init; }
    public double Max { get; init; }

    /// <summary>For choices: the accepted values, in the order the error message lists them.</summary>
    public IReadOnlyList<string> Choices { get; init; } = [];

    /// <summary>False for the platform's own variables (<c>HOME</c>, <c>TMPDIR</c>...) that are read but are not ours to document.</summary>
    public bool Documented { get; init; } = true;

    /// <summary>The configuration key: <c>ConnectionStrings__redis</c> is read as <c>ConnectionStrings:redis</c>.</summary>
    public string Key => Name.Replace("__", ":", StringComparison.Ordinal);

    /// <summary>The default as the settings tables write it.</summary>
    public string DocumentedDefault => Required ? "required" : Default is not null ? $"`{Default}`" : WhenUnset ?? "unset";

    public bool ReadBy(SettingComponent component) => (Component & component) != 0;
}
