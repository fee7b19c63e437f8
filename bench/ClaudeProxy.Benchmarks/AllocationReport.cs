using Microsoft.Diagnostics.Tracing;
using Microsoft.Diagnostics.Tracing.Etlx;
using Microsoft.Diagnostics.Tracing.Parsers.Clr;

namespace ClaudeProxy.Benchmarks;

/// <summary>
/// Reads a <c>dotnet-trace --profile gc-verbose</c> trace: the runtime samples one allocation about every 100 KB
/// (AllocationTick), with its type and stack. Prints the bytes per request by type, and by the first frame of the
/// stack that belongs to the gateway (or, with none, to the library that allocated).
/// </summary>
public static class AllocationReport
{
    public static void Run(string file, long requests, int top)
    {
        var etlx = TraceLog.CreateFromEventPipeDataFile(file);
        using var log = new TraceLog(etlx);
        var byType = new Dictionary<string, double>();
        var bySite = new Dictionary<string, double>();
        double total = 0;
        foreach (var e in log.Events)
        {
            if (e is not GCAllocationTickTraceData tick)
            {
                continue;
            }
            // Each tick stands for the ~100 KB allocated since the previous one.
            var bytes = (double)tick.AllocationAmount64;
            total += bytes;
            var type = tick.TypeName ?? "?";
            byType[type] = byType.GetValueOrDefault(type) + bytes;
            var site = Site(tick.CallStack());
            bySite[site] = bySite.GetValueOrDefault(site) + bytes;
        }
        Console.WriteLine($"allocated: {total / requests:0} bytes per request over {requests} requests (sampled)");
        Print("by type", byType, requests, total, top);
        Print("by site (first gateway frame, else the allocating library's)", bySite, requests, total, top);
    }

    private static string Site(TraceCallStack? stack)
    {
        string? first = null;
        for (var frame = stack; frame is not null; frame = frame.Caller)
        {
            var method = frame.CodeAddress.FullMethodName;
            if (string.IsNullOrEmpty(method))
            {
                continue;
            }
            first ??= frame.CodeAddress.ModuleName + "!" + method;
            if (method.StartsWith("ClaudeProxy.", StringComparison.Ordinal))
            {
                return method;
            }
        }
        return first ?? "?";
    }

    private static void Print(string title, Dictionary<string, double> values, long requests, double total, int top)
    {
        Console.WriteLine();
        Console.WriteLine($"| {title} | bytes/request | share |");
        Console.WriteLine("|---|---|---|");
        foreach (var (name, bytes) in values.OrderByDescending(kv => kv.Value).Take(top))
        {
            var shown = name.Length > 110 ? name[..110] + "…" : name;
            Console.WriteLine($"| `{shown.Replace("|", "\\|")}` | {bytes / requests:0} | {100 * bytes / total:0.0} % |");
        }
    }
}
