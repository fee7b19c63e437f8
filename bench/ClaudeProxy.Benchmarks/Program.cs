using BenchmarkDotNet.Running;
using ClaudeProxy.Benchmarks;

// bench/ClaudeProxy.Benchmarks micro           BenchmarkDotNet micro-benchmarks of the hot path's pieces
// bench/ClaudeProxy.Benchmarks forwarder URL DESTINATION
//                                              the floor: YARP's forwarder alone, with nothing of the gateway
// bench/ClaudeProxy.Benchmarks allocations TRACE REQUESTS [TOP]
//                                              bytes allocated per request by type and by site, from a gc-verbose trace
// bench/ClaudeProxy.Benchmarks servers FILE    redis-server and PostgreSQL started as the tests start them; their ports
//                                              go to FILE (redis_port=, pg_port=); SIGTERM or SIGINT stops both
// bench/ClaudeProxy.Benchmarks capacity-redis HOST:PORT [DEVICES SECONDS CONCURRENCY]
//                                              the gateway's admission and settlement scripts against that Redis: calls per
//                                              Redis CPU-second (bench/capacity.sh)
// bench/ClaudeProxy.Benchmarks capacity-postgres CONNECTION [ROWS BATCHES DEVICES]
//                                              the usage writer's COPY and merge into that (migrated) database: rows per
//                                              second and Postgres CPU per 1,000 rows; BATCHES is comma-separated sizes
// bench/ClaudeProxy.Benchmarks capacity-scripts
//                                              prints the admission and settlement scripts as the gateway sends them
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
if (args.Length >= 2 && args[0] == "capacity-redis")
{
    return await CapacityRedis.RunAsync(args[1], Number(2, 5000), Number(3, 8), Number(4, 64));
}
if (args.Length >= 2 && args[0] == "capacity-postgres")
{
    var batches = (args.Length > 3 ? args[3] : "100,500,2000").Split(',').Select(int.Parse).ToArray();
    return await CapacityPostgres.RunAsync(args[1], Number(2, 60_000), batches, Number(4, 5000));
}
if (args is ["capacity-scripts"])
{
    Console.Write(CapacityRedis.Describe());
    return 0;
}
var rest = args.Length > 0 && args[0] == "micro" ? args[1..] : args;
BenchmarkSwitcher.FromAssembly(typeof(BareForwarder).Assembly).Run(rest.Length > 0 ? rest : ["--filter", "*"]);
return 0;

int Number(int index, int fallback) => args.Length > index ? int.Parse(args[index], System.Globalization.CultureInfo.InvariantCulture) : fallback;
