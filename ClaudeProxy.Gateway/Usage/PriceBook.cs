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
/// family by the family's globs, first match wins. A model with no family is never guessed at a family: it is charged
/// at the highest price of each kind in the book (<see cref="Highest"/>), and its cost is marked estimated. Only ids
/// that resolve to a family are remembered, and only so many: a client inventing model ids cannot grow the cache.
/// </summary>
public sealed partial class PriceBook
{
    private const decimal PerMillion = 1_000_000m;
    private const int MaxRemembered = 1024;
    private readonly ConcurrentDictionary<string, ModelPrice> _resolved = new(StringComparer.Ordinal);
    private readonly PricingFile _file;
    private int _remembered;

    public PriceBook(PricingFile file)
    {
        _file = file;
        Highest = new ModelPrice("highest", [], file.Families.Max(f => f.Input), file.Families.Max(f => f.CacheWrite5m),
            file.Families.Max(f => f.CacheWrite1h), file.Families.Max(f => f.CacheRead), file.Families.Max(f => f.Output));
    }

    public string? Source => _file.Source;
    public string? AsOf => _file.AsOf;

    /// <summary>The highest price of each kind across the book: what a model without a price is charged.</summary>
    public ModelPrice Highest { get; }

    /// <summary>Model ids remembered with their family.</summary>
    internal int Remembered => Volatile.Read(ref _remembered);

    /// <summary>The families in the book's order: the first whose globs match a model prices it.</summary>
    public IReadOnlyList<ModelPrice> Families => _file.Families;

    /// <summary>USD per web search.</summary>
    public decimal WebSearchPrice => _file.WebSearchPerThousand / 1000m;

    public static PriceBook Load(IConfiguration config)
    {
        var path = config.Settings().Text(Settings.SettingsCatalogue.PricingFile) ?? Path.Combine(AppContext.BaseDirectory, "Usage", "pricing.json");
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

    /// <summary>The model's family price, or null when no family's globs match it.</summary>
    public ModelPrice? Find(string model)
    {
        if (_resolved.TryGetValue(model, out var known))
        {
            return known;
        }
        var found = Resolve(model);
        if (found is not null && Volatile.Read(ref _remembered) < MaxRemembered && _resolved.TryAdd(model, found))
        {
            Interlocked.Increment(ref _remembered);
        }
        return found;
    }

    private ModelPrice? Resolve(string model)
    {
        foreach (var family in _file.Families)
        {
            foreach (var glob in family.Models)
            {
                if (ModelAllowlist.Glob(glob, model))
                {
                    return family;
                }
            }
        }
        return null;
    }

    /// <summary>The cost in USD, or null when the model has no price.</summary>
    public decimal? Cost(string model, in UsageCounts usage) => Find(model) is { } price ? Cost(price, usage) : null;

    /// <summary>What a request is charged: at its model's price, or estimated at <see cref="Highest"/> when it has none.</summary>
    public decimal Charge(string model, in UsageCounts usage, out bool estimated)
    {
        var price = Find(model);
        estimated = price is null;
        return Cost(price ?? Highest, usage);
    }

    /// <summary>
    /// The most a request can cost: its estimated input at the input price, <paramref name="maxTokens"/> at the output
    /// price and <paramref name="webSearches"/> at the search price, at <see cref="Highest"/> when the model has no price.
    /// </summary>
    public decimal WorstCase(string model, long inputTokens, long maxTokens, long webSearches = 0)
    {
        var price = Find(model) ?? Highest;
        return (inputTokens * price.Input + maxTokens * price.Output) / PerMillion + webSearches * WebSearchPrice;
    }

    private decimal Cost(ModelPrice price, in UsageCounts usage) =>
        ((usage.Input ?? 0) * price.Input
            + usage.Write5m * price.CacheWrite5m
            + usage.Write1h * price.CacheWrite1h
            + (usage.CacheRead ?? 0) * price.CacheRead
            + (usage.Output ?? 0) * price.Output) / PerMillion
        + (usage.WebSearches ?? 0) * WebSearchPrice;
}

[JsonSerializable(typeof(PricingFile))]
internal sealed partial class UsageJsonContext : JsonSerializerContext;
