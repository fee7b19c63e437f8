using BenchmarkDotNet.Running;
using ClaudeProxy.Benchmarks;

// bench/ClaudeProxy.Benchmarks micro           BenchmarkDotNet micro-benchmarks of the hot path's pieces
// bench/ClaudeProxy.Benchmarks forwarder URL DESTINATION
//                                              the floor: YARP's forwarder alone, with nothing of the gateway
// bench/ClaudeProxy.Benchmarks allocations TRACE REQUESTS [TOP]
//                                              bytes allocated per request by type and by site, from a gc-verbose trace
// bench/ClaudeProxy.Benchmarks servers FILE    redis-server and PostgreSQL started as the tests start them; their ports
//                                              go to FILE (redis_port=, pg_port=); SIGTERM or SIGINT stops both
if (args.Length >= 3 && args[0] == "forwarder")
{
    await BareForwarder.RunAsync(args[1], args[2]);
    return 0;
}
if (args.Length >= 3 && args[0] == "allocations")
{
    AllocationReport.Run(args[1], long.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture), args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 25);
    return 0;
}
if (args.Length >= 2 && args[0] == "servers")
{
    await LocalServers.RunAsync(args[1]);
    return 0;
}
var rest = args.Length > 0 && args[0] == "micro" ? args[1..] : args;
BenchmarkSwitcher.FromAssembly(typeof(BareForwarder).Assembly).Run(rest.Length > 0 ? rest : ["--filter", "*"]);
return 0;
