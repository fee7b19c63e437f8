using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Gateway.Tokens;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>A model family's prices, USD per million tokens.</summary>
public sealed record ModelPrice(
    [property: JsonPropertyName("family")] string Family,
    [property: JsonPropertyName("models")] string[] Models,
    [property: JsonPropertyName("input")] decimal Input,
    [property: JsonPropertyName("cache_write_5m")] decimal CacheWrite5m,
    [property: JsonPropertyName("cache_write_1h")] decimal CacheWrite1h,
    [property: JsonPropertyName("cache_read")] decimal CacheRead,
    [property: JsonPropertyName("output")] decimal Output);

public sealed record PricingFile(
    [property: JsonPropertyName("source")] string? Source,
    [property: JsonPropertyName("as_of")] string? AsOf,
    [property: JsonPropertyName("web_search_per_thousand")] decimal WebSearchPerThousand,
    [property: JsonPropertyName("families")] ModelPrice[] Families);

/// <summary>
/// Prices from the data file shipped with the gateway (or <c>PRICING_FILE</c>). A dated model id resolves to its
/// family by the family's globs, first match wins; a model with no family has no price, and is never guessed.
/// </summary>
public sealed partial class PriceBook
{
    private const decimal PerMillion = 1_000_000m;
    private readonly ConcurrentDictionary<string, ModelPrice?> _resolved = new(StringComparer.Ordinal);
    private readonly PricingFile _file;

    public PriceBook(PricingFile file) => _file = file;

    public string? Source => _file.Source;
    public string? AsOf => _file.AsOf;

    public static PriceBook Load(IConfiguration config)
    {
        var path = config["PRICING_FILE"] is { Length: > 0 } p ? p : Path.Combine(AppContext.BaseDirectory, "Usage", "pricing.json");
        try
        {
            var file = JsonSerializer.Deserialize(File.ReadAllText(path), UsageJsonContext.Default.PricingFile);
            if (file?.Families is not { Length: > 0 })
            {
                throw new GatewayConfigurationException($"PRICING_FILE {path} lists no model families.");
            }
            return new PriceBook(file);
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            throw new GatewayConfigurationException($"PRICING_FILE {path} cannot be read: {e.Message}");
        }
    }

    public ModelPrice? Find(string model) => _resolved.GetOrAdd(model, m =>
        _file.Families.FirstOrDefault(f => f.Models.Any(glob => ModelAllowlist.Glob(glob, m))));

    /// <summary>The cost in USD, or null when the model has no price.</summary>
    public decimal? Cost(string model, in UsageCounts usage)
    {
        if (Find(model) is not { } price)
        {
            return null;
        }
        return ((usage.Input ?? 0) * price.Input
                + usage.Write5m * price.CacheWrite5m
                + usage.Write1h * price.CacheWrite1h
                + (usage.CacheRead ?? 0) * price.CacheRead
                + (usage.Output ?? 0) * price.Output) / PerMillion
            + (usage.WebSearches ?? 0) * _file.WebSearchPerThousand / 1000m;
    }

    /// <summary>The most a request can cost: its estimated input at the input price plus max_tokens at the output price.</summary>
    public decimal? WorstCase(string model, long inputTokens, long maxTokens) =>
        Find(model) is { } price ? (inputTokens * price.Input + maxTokens * price.Output) / PerMillion : null;
}

[JsonSerializable(typeof(PricingFile))]
internal sealed partial class UsageJsonContext : JsonSerializerContext;
