using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;

namespace ClaudeProxy.AppHost.Hosting;

/// <summary>
/// Runs the resources as local processes, in dependency order, each started only once what it waits for is healthy.
/// Injects the environment Aspire would, prefixes and files every log line, restarts a crashed service with
/// backoff, and on Ctrl-C stops everything in reverse order.
/// </summary>
public sealed partial class Runner : IAsyncDisposable
{
    private readonly IReadOnlyList<Resource> _resources;
    private readonly AppHostOptions _options;
    private readonly string _root;
    private readonly string _data;
    private readonly string _logs;
    private readonly Dictionary<string, string> _secrets;
    private readonly List<Instance> _instances = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(3) };
    private readonly object _console = new();
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
    private static readonly string[] Colors = ["\u001b[36m", "\u001b[33m", "\u001b[35m", "\u001b[32m", "\u001b[34m", "\u001b[31m"];

    public Runner(IReadOnlyList<Resource> resources, AppHostOptions options, string root)
    {
        _resources = resources;
        _options = options;
        _root = root;
        _data = Path.GetFullPath(options.DataDir ?? Path.Combine(root, ".run"));
        _logs = Path.Combine(_data, "logs");
        Directory.CreateDirectory(_logs);
        OwnerOnly(_data, directory: true);
        _secrets = LoadSecrets();
    }

    /// <summary>One running process of a resource (a replica), with its state for the live table.</summary>
    private sealed class Instance(string name, Resource resource, int replica)
    {
        public string Name { get; } = name;
        public Resource Resource { get; } = resource;
        public int Replica { get; } = replica;
        public Process? Process { get; set; }
        public string State { get; set; } = "waiting";
        public string Health { get; set; } = "-";
        public string Url { get; set; } = "";
        public int Restarts { get; set; }
        public Func<Task<Process>>? Start { get; set; }
        public Func<Task<bool>>? Healthy { get; set; }
        public Func<Task>? Stop { get; set; }
        public TaskCompletionSource Exited { get; set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public async Task<int> RunAsync()
    {
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; _stopping.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; _stopping.Cancel(); });
        Say($"ClaudeProxy AppHost: data in {_data}, logs in {_logs}");
        try
        {
            foreach (var resource in _resources)
            {
                await StartResourceAsync(resource);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or TimeoutException)
        {
            if (!_stopping.IsCancellationRequested)
            {
                Say($"\u001b[31mStart-up failed: {e.Message}\u001b[0m");
            }
            await StopAllAsync();
            return _stopping.IsCancellationRequested ? 0 : 1;
        }
        WriteResourceFile();
        PrintTable();
        PrintHowTo();
        try
        {
            await Task.Delay(Timeout.Infinite, _stopping.Token);
        }
        catch (OperationCanceledException)
        {
        }
        Say("Stopping...");
        await StopAllAsync();
        Say("Stopped.");
        return 0;
    }

    private async Task StartResourceAsync(Resource resource)
    {
        foreach (var dependency in resource.WaitsFor)
        {
            Say($"{resource.Name}: waiting for {dependency.Name} to be healthy");
            foreach (var instance in _instances.Where(i => i.Resource == dependency))
            {
                await WaitHealthyAsync(instance);
            }
        }
        foreach (var dependency in resource.WaitsForCompletion)
        {
            Say($"{resource.Name}: waiting for {dependency.Name} to finish");
            foreach (var instance in _instances.Where(i => i.Resource == dependency))
            {
                await instance.Exited.Task.WaitAsync(_stopping.Token);
                if (instance.Process?.ExitCode != 0)
                {
                    throw new InvalidOperationException($"{dependency.Name} failed with exit code {instance.Process?.ExitCode}; see {LogPath(instance.Name)}");
                }
            }
        }
        switch (resource)
        {
            case RedisResource redis:
                redis.Port = FreePort();
                AddInstance(resource.Name, resource, 0, $"redis://127.0.0.1:{redis.Port}",
                    () => Task.FromResult(Spawn(resource.Name, "redis-server", ["--port", redis.Port.ToString(), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", Dir("redis"), "--protected-mode", "no"])),
                    () => PingRedisAsync(redis.Port));
                break;
            case PostgresResource postgres:
                postgres.Port = FreePort();
                await InitPostgresAsync(postgres);
                AddInstance(resource.Name, resource, 0, $"postgres://127.0.0.1:{postgres.Port}",
                    () => Task.FromResult(AsPostgres(resource.Name, "postgres", ["-D", PostgresData(), "-p", postgres.Port.ToString(), "-k", Dir("pg-socket"),
                        "-c", "listen_addresses=127.0.0.1"])),
                    () => PostgresReadyAsync(postgres));
                break;
            case AnthropicResource anthropic when anthropic.Simulated:
                anthropic.Port = _options.DynamicPorts ? FreePort() : PortOr(3009);
                anthropic.Key = _secrets["SIMULATOR_API_KEY"];
                anthropic.BaseUrl = $"http://127.0.0.1:{anthropic.Port}";
                Say("\u001b[33mANTHROPIC_API_KEY is not set: answers come from the Anthropic SIMULATOR, not from Claude.\u001b[0m");
                AddInstance(resource.Name, resource, 0, anthropic.BaseUrl,
                    () => Task.FromResult(Spawn(resource.Name, "dotnet", [Dll("ClaudeProxy.AnthropicSimulator"), "--urls", anthropic.BaseUrl, "--api-key", anthropic.Key])),
                    () => HttpOkAsync(anthropic.BaseUrl + "/v1/models", anthropic.Key));
                break;
            case AnthropicResource anthropic:
                anthropic.Key = anthropic.RealKey!;
                Say($"anthropic: forwarding to {anthropic.BaseUrl} with ANTHROPIC_API_KEY");
                return;
            case ProjectResource project:
                for (var replica = 0; replica < project.Replicas; replica++)
                {
                    var ports = project.Endpoints.Select(e => replica == 0 && !_options.DynamicPorts ? e.Port : FreePort()).ToArray();
                    if (replica == 0)
                    {
                        for (var i = 0; i < ports.Length; i++)
                        {
                            project.Endpoints[i].Port = ports[i];
                        }
                    }
                    var env = Environment(project, replica, ports);
                    var name = project.Replicas > 1 ? $"{project.Name}-{replica}" : project.Name;
                    var url = ports.Length > 0 ? $"http://127.0.0.1:{ports[0]}" : "";
                    AddInstance(name, resource, replica, url,
                        () => Task.FromResult(Spawn(name, "dotnet", [Dll(project.Project), .. project.Args], env)),
                        project.OneShot ? null : () => HttpOkAsync(url + "/readyz", null));
                }
                break;
        }
        foreach (var instance in _instances.Where(i => i.Resource == resource))
        {
            await LaunchAsync(instance);
        }
        if (resource is ProjectResource { OneShot: false } || resource is not ProjectResource)
        {
            foreach (var instance in _instances.Where(i => i.Resource == resource))
            {
                await WaitHealthyAsync(instance);
            }
        }
    }

    private void AddInstance(string name, Resource resource, int replica, string url, Func<Task<Process>> start, Func<Task<bool>>? healthy) =>
        _instances.Add(new Instance(name, resource, replica) { Url = url, Start = start, Healthy = healthy });

    private async Task LaunchAsync(Instance instance)
    {
        instance.Exited = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        instance.Process = await instance.Start!();
        instance.State = "starting";
        Say($"{instance.Name}: started (pid {instance.Process.Id})");
        _ = WatchAsync(instance);
    }

    /// <summary>Marks exits; restarts a long-running service that crashed, with backoff.</summary>
    private async Task WatchAsync(Instance instance)
    {
        var process = instance.Process!;
        await process.WaitForExitAsync(CancellationToken.None);
        instance.Exited.TrySetResult();
        var oneShot = instance.Resource is ProjectResource { OneShot: true };
        if (_stopping.IsCancellationRequested || oneShot)
        {
            instance.State = oneShot ? (process.ExitCode == 0 ? "finished" : $"failed ({process.ExitCode})") : "stopped";
            return;
        }
        instance.State = $"crashed ({process.ExitCode})";
        instance.Health = "unhealthy";
        var delay = TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, instance.Restarts)));
        Say($"\u001b[31m{instance.Name}: exited with code {process.ExitCode}; restarting in {delay.TotalSeconds:0} s\u001b[0m");
        PrintTable();
        try
        {
            await Task.Delay(delay, _stopping.Token);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        instance.Restarts++;
        await LaunchAsync(instance);
        _ = WaitHealthyAsync(instance).ContinueWith(_ => PrintTable(), TaskScheduler.Default);
    }

    private async Task WaitHealthyAsync(Instance instance)
    {
        if (instance.Healthy is null)
        {
            return;
        }
        var clock = Stopwatch.StartNew();
        while (!await instance.Healthy())
        {
            if (instance.Exited.Task.IsCompleted && instance.Resource is not ProjectResource)
            {
                throw new InvalidOperationException($"{instance.Name} exited during start-up; see {LogPath(instance.Name)}");
            }
            if (clock.Elapsed > TimeSpan.FromMinutes(2))
            {
                throw new TimeoutException($"{instance.Name} did not become healthy in 2 minutes; see {LogPath(instance.Name)}");
            }
            await Task.Delay(200, _stopping.Token);
        }
        if (instance.State != "running")
        {
            instance.State = "running";
            instance.Health = "healthy";
            Say($"{instance.Name}: healthy ({clock.Elapsed.TotalSeconds:0.0} s){(instance.Url.Length > 0 ? " at " + instance.Url : "")}");
        }
    }

    /// <summary>What Aspire would inject: connection strings, service endpoints, OpenTelemetry names, URLs, secrets.</summary>
    private Dictionary<string, string> Environment(ProjectResource project, int replica, int[] ports)
    {
        var env = new Dictionary<string, string>
        {
            ["OTEL_SERVICE_NAME"] = project.Name,
            ["OTEL_RESOURCE_ATTRIBUTES"] = $"service.instance.id={project.Name}-{replica},deployment.environment=local",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["LOG_LEVEL"] = System.Environment.GetEnvironmentVariable("LOG_LEVEL") ?? "info",
        };
        if (System.Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") is { Length: > 0 } otlp)
        {
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp;
        }
        for (var i = 0; i < project.Endpoints.Count; i++)
        {
            var endpoint = project.Endpoints[i];
            if (i == 0)
            {
                env["ASPNETCORE_URLS"] = $"http://127.0.0.1:{ports[i]}";
            }
            if (endpoint.Name == "management")
            {
                env["MANAGEMENT_PORT"] = ports[i].ToString();
            }
        }
        foreach (var reference in project.References)
        {
            switch (reference)
            {
                case RedisResource redis:
                    env[$"ConnectionStrings__{redis.Name}"] = redis.ConnectionString;
                    break;
                case DatabaseResource db:
                    env[$"ConnectionStrings__{db.Name}"] = db.ConnectionString;
                    break;
                case AnthropicResource anthropic:
                    env["ANTHROPIC_BASE_URL"] = anthropic.BaseUrl;
                    env["ANTHROPIC_API_KEY"] = anthropic.Key;
                    break;
                case Endpoint endpoint:
                    env[$"services__{endpoint.Project.Name}__{endpoint.Name}__0"] = endpoint.Url;
                    break;
                case ProjectResource other:
                    foreach (var e in other.Endpoints)
                    {
                        env[$"services__{other.Name}__{e.Name}__0"] = e.Url;
                    }
                    break;
            }
        }
        if (project.Project == "ClaudeProxy.Gateway")
        {
            env["HOST"] = "127.0.0.1";
            env["JWT_SECRET"] = _secrets["JWT_SECRET"];
            env["ADMIN_API_KEY"] = _secrets["ADMIN_API_KEY"];
            env["MIGRATE_ON_START"] = "false";
            env["USAGE_SPOOL_DIR"] = Dir(Path.Combine("spool", $"{project.Name}-{replica}"));
            env["PROXY_BASE_URL"] = ports.Length > 0 ? $"http://localhost:{ports[0]}" : "";
        }
        if (project.Project == "ClaudeProxy.Admin")
        {
            env["ADMIN_API_KEY"] = _secrets["ADMIN_API_KEY"];
            env["ADMIN_PASSWORD"] = _secrets["ADMIN_PASSWORD"];
        }
        return env;
    }

    private Process Spawn(string name, string file, string[] args, IDictionary<string, string>? env = null)
    {
        // setsid (which execs, keeping the pid) puts each child in its own session: a Ctrl-C at the terminal reaches the
        // AppHost alone, which then stops the children one by one, in reverse order.
        var start = new ProcessStartInfo("setsid")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _root,
        };
        start.ArgumentList.Add(file);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
        {
            start.Environment[k] = v;
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        var color = Colors[Math.Abs(name.GetHashCode(StringComparison.Ordinal)) % Colors.Length];
        var log = new StreamWriter(new FileStream(LogPath(name), FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        var closed = false;
        void Line(string? line)
        {
            if (line is null)
            {
                return;
            }
            lock (_console)
            {
                Console.Out.WriteLine($"{color}[{name}]\u001b[0m {line}");
                // The last lines of a process can be delivered after it has exited and its log was closed.
                if (!closed)
                {
                    log.WriteLine($"{DateTimeOffset.UtcNow:O} {line}");
                }
            }
        }
        process.OutputDataReceived += (_, e) => Line(e.Data);
        process.ErrorDataReceived += (_, e) => Line(e.Data);
        process.Exited += (_, _) =>
        {
            // Exited can come before the redirected output is drained: wait for it, then close the log.
            process.WaitForExit();
            lock (_console)
            {
                closed = true;
                log.Dispose();
            }
        };
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private string LogPath(string name) => Path.Combine(_logs, name + ".log");

    private string Dir(string name)
    {
        var path = Path.Combine(_data, name);
        Directory.CreateDirectory(path);
        return path;
    }

    private string Dll(string project)
    {
        var path = Path.Combine(_root, project, "bin", _options.Configuration, "net10.0", project + ".dll");
        if (!File.Exists(path))
        {
            Say($"{project}: not built yet, building ({_options.Configuration})");
            using var build = Process.Start(new ProcessStartInfo("dotnet", ["build", Path.Combine(_root, project), "-c", _options.Configuration, "-nologo", "-v", "quiet"])
            {
                WorkingDirectory = _root,
            })!;
            build.WaitForExit();
        }
        return File.Exists(path) ? path : throw new InvalidOperationException($"{path} is missing: build with dotnet build -c {_options.Configuration}");
    }

    private int PortOr(int port) => _options.DynamicPorts ? FreePort() : port;

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    // ---- PostgreSQL: initdb once into a folder that survives restarts; as root, every server command runs as postgres.

    private static readonly bool IsRoot = System.Environment.UserName == "root";

    private string PostgresData() => Path.Combine(_data, "postgres");

    private static string PgBin(string tool) =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").OrderByDescending(d => d).Select(d => Path.Combine(d, "bin", tool)).FirstOrDefault(File.Exists) ?? tool
            : tool;

    // setpriv execs the tool itself as postgres (no wrapper process in between), so signals reach PostgreSQL directly.
    private Process AsPostgres(string name, string tool, string[] args) =>
        IsRoot ? Spawn(name, "setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", PgBin(tool), .. args]) : Spawn(name, PgBin(tool), args);

    private async Task InitPostgresAsync(PostgresResource postgres)
    {
        var socket = Dir("pg-socket");
        if (IsRoot)
        {
            await RunAsync("chown", "postgres:postgres", _data, socket);
            await RunAsync("chmod", "711", _data);
        }
        if (File.Exists(Path.Combine(PostgresData(), "PG_VERSION")))
        {
            Say($"{postgres.Name}: reusing the data in {PostgresData()}");
            return;
        }
        Say($"{postgres.Name}: initdb into {PostgresData()}");
        var initdb = AsPostgres(postgres.Name, "initdb", ["-D", PostgresData(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
        await initdb.WaitForExitAsync();
        if (initdb.ExitCode != 0)
        {
            throw new InvalidOperationException($"initdb failed; see {LogPath(postgres.Name)}");
        }
    }

    private async Task<bool> PostgresReadyAsync(PostgresResource postgres)
    {
        if (!await RunQuietAsync(PgBin("pg_isready"), "-h", "127.0.0.1", "-p", postgres.Port.ToString(), "-U", "postgres"))
        {
            return false;
        }
        foreach (var db in postgres.Databases)
        {
            // createdb fails harmlessly when the database exists from an earlier run.
            await RunQuietAsync(PgBin("createdb"), "-h", "127.0.0.1", "-p", postgres.Port.ToString(), "-U", "postgres", db.Name);
        }
        return true;
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        if (!await RunQuietAsync(file, args))
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed");
        }
    }

    private static async Task<bool> RunQuietAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        await process.StandardOutput.ReadToEndAsync();
        await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return process.ExitCode == 0;
    }

    private static async Task<bool> PingRedisAsync(int port)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray());
            var buffer = new byte[16];
            var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(1));
            return read > 0 && buffer[0] == (byte)'+';
        }
        catch (Exception e) when (e is SocketException or IOException or TimeoutException)
        {
            return false;
        }
    }

    private async Task<bool> HttpOkAsync(string url, string? apiKey)
    {
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            if (apiKey is not null)
            {
                request.Headers.Add("x-api-key", apiKey);
            }
            using var response = await _http.SendAsync(request);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    // ---- Stopping: reverse order, politely first.

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    private const int SigInt = 2;
    private const int SigTerm = 15;

    private async Task StopAllAsync()
    {
        // From here on an exit is a stop, not a crash to restart.
        if (!_stopping.IsCancellationRequested)
        {
            await _stopping.CancelAsync();
        }
        foreach (var instance in Enumerable.Reverse(_instances))
        {
            var process = instance.Process;
            if (process is null || process.HasExited)
            {
                continue;
            }
            Say($"{instance.Name}: stopping");
            if (instance.Resource is PostgresResource)
            {
                Kill(process.Id, SigInt); // PostgreSQL's fast shutdown
            }
            else
            {
                Kill(process.Id, SigTerm);
            }
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await process.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            instance.State = "stopped";
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_instances.Any(i => i.Process is { HasExited: false }))
        {
            await StopAllAsync();
        }
        _http.Dispose();
        _stopping.Dispose();
    }

    // ---- Secrets, the resource file, and what the user sees.

    private Dictionary<string, string> LoadSecrets()
    {
        var path = Path.Combine(_data, "secrets.env");
        var secrets = File.Exists(path)
            ? File.ReadAllLines(path).Where(l => l.Contains('=')).Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1])
            : [];
        var generated = false;
        foreach (var (key, length) in new[] { ("JWT_SECRET", 48), ("ADMIN_API_KEY", 32), ("ADMIN_PASSWORD", 12), ("SIMULATOR_API_KEY", 24) })
        {
            if (!secrets.ContainsKey(key))
            {
                secrets[key] = (key == "SIMULATOR_API_KEY" ? "sk-sim-" : "") + Convert.ToHexString(RandomNumberGenerator.GetBytes(length / 2)).ToLowerInvariant();
                generated = true;
            }
        }
        if (generated)
        {
            File.WriteAllLines(path, secrets.Select(s => $"{s.Key}={s.Value}"));
            OwnerOnly(path, directory: false);
            Say($"Generated secrets in {path} (readable by you only). Shown this once:");
            Say($"  admin app password (ADMIN_PASSWORD): {secrets["ADMIN_PASSWORD"]}");
            Say($"  operator key (ADMIN_API_KEY):        {secrets["ADMIN_API_KEY"]}");
        }
        return secrets;
    }

    private static void OwnerOnly(string path, bool directory)
    {
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, directory
                ? UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute
                : UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    /// <summary>What is running, with its references, for tools and tests (resources.json in the data folder).</summary>
    private void WriteResourceFile()
    {
        var resources = _resources.Select(r => new
        {
            name = r.Name,
            type = r switch { RedisResource => "redis", PostgresResource => "postgres", AnthropicResource a => a.Simulated ? "simulator" : "anthropic", _ => "project" },
            project = (r as ProjectResource)?.Project,
            args = (r as ProjectResource)?.Args,
            references = r.References.Select(Publisher.ReferenceName).ToArray(),
            replicas = _instances.Count(i => i.Resource == r),
            pids = _instances.Where(i => i.Resource == r && i.Process is { HasExited: false }).Select(i => i.Process!.Id).ToArray(),
            urls = _instances.Where(i => i.Resource == r).Select(i => i.Url).ToArray(),
        });
        File.WriteAllText(Path.Combine(_data, "resources.json"), JsonSerializer.Serialize(resources, Indented));
    }

    private void PrintTable()
    {
        lock (_console)
        {
            Console.Out.WriteLine();
            Console.Out.WriteLine($"{"RESOURCE",-14} {"STATE",-14} {"HEALTH",-10} {"RESTARTS",-8}  URL");
            foreach (var i in _instances)
            {
                Console.Out.WriteLine($"{i.Name,-14} {i.State,-14} {i.Health,-10} {i.Restarts,-8}  {i.Url}");
            }
            Console.Out.WriteLine();
        }
    }

    private void PrintHowTo()
    {
        var gateway = _resources.OfType<ProjectResource>().First(p => p.Project == "ClaudeProxy.Gateway" && !p.OneShot);
        var admin = _resources.OfType<ProjectResource>().FirstOrDefault(p => p.Project == "ClaudeProxy.Admin");
        var proxy = gateway.GetEndpoint("http").Url.Replace("127.0.0.1", "localhost", StringComparison.Ordinal);
        Say($"""
            ClaudeProxy is running.
              Gateway:        {proxy}
              Management API: {gateway.GetEndpoint("management").Url}   (Authorization: Bearer $ADMIN_API_KEY from {Path.Combine(_data, "secrets.env")})
              Admin app:      {admin?.Endpoints.FirstOrDefault()?.Url ?? "-"}   (user admin, ADMIN_PASSWORD from the same file)
              Logs:           {_logs}

            Point Claude Code at the gateway:
              TOKEN=$(curl -s {proxy}/bootstrap -H 'content-type: application/json' -d "{"{"}\"device_id\":\"$(hostname)\"{"}"}" | sed 's/.*"wrapper_token":"\([^"]*\)".*/\1/')
              ANTHROPIC_BASE_URL={proxy} ANTHROPIC_AUTH_TOKEN=$TOKEN claude
            or, to refresh tokens by itself, in ~/.claude/settings.json:
              {"{"} "apiKeyHelper": "{Path.Combine(_root, "scripts", "claude-token-helper")}", "env": {"{"} "ANTHROPIC_BASE_URL": "{proxy}", "CLAUDEPROXY_URL": "{proxy}" {"}"} {"}"}
            Press Ctrl-C to stop everything.
            """);
    }

    private void Say(string message)
    {
        lock (_console)
        {
            Console.Out.WriteLine(message);
        }
    }
}
