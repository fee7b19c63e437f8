using BenchmarkDotNet.Running;
using ClaudeProxy.Benchmarks;

// bench/ClaudeProxy.Benchmarks micro           BenchmarkDotNet micro-benchmarks of the hot path's pieces
// bench/ClaudeProxy.Benchmarks forwarder URL DESTINATION
//                                              the floor: YARP's forwarder alone, with nothing of the gateway
if (args.Length >= 3 && args[0] == "forwarder")
{
    await BareForwarder.RunAsync(args[1], args[2]);
    return 0;
}
var rest = args.Length > 0 && args[0] == "micro" ? args[1..] : args;
BenchmarkSwitcher.FromAssembly(typeof(BareForwarder).Assembly).Run(rest.Length > 0 ? rest : ["--filter", "*"]);
return 0;
