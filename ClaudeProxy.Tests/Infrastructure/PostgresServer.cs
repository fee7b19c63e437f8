using System.Diagnostics;
using Npgsql;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>
/// A real PostgreSQL server in a temporary folder on a free loopback port. PostgreSQL refuses to run as root, so
/// as root every server command runs through <c>runuser -u postgres</c>.
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    private readonly string _directory;
    private readonly string _bin;
    private static readonly bool IsRoot = Environment.UserName == "root";

    private PostgresServer(string directory, string bin, int port)
    {
        _directory = directory;
        _bin = bin;
        Port = port;
    }

    public int Port { get; private set; }
    private string DataDir => Path.Combine(_directory, "data");

    public string ConnectionString(string database = "postgres") =>
        $"Host=127.0.0.1;Port={Port};Username=postgres;Database={database};Pooling=false;Timeout=5";

    public string Url(string database) => $"postgres://postgres@127.0.0.1:{Port}/{database}";

    public static async Task<PostgresServer> StartAsync()
    {
        var bin = Directory.GetDirectories("/usr/lib/postgresql").OrderByDescending(d => d).Select(d => Path.Combine(d, "bin"))
            .FirstOrDefault(d => File.Exists(Path.Combine(d, "initdb"))) ?? throw new InvalidOperationException("PostgreSQL is not installed (initdb not found)");
        var directory = Directory.CreateTempSubdirectory("claudeproxy-pg-").FullName;
        if (IsRoot)
        {
            await RunAsync("chown", "postgres:postgres", directory);
        }
        var server = new PostgresServer(directory, bin, RedisServer.FreePort());
        await server.AsServerAsync("initdb", "-D", server.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C");
        // A port found free can be taken before PostgreSQL binds it: then pg_ctl fails, and another is tried.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await server.StartAgainAsync();
                return server;
            }
            catch (InvalidOperationException) when (attempt < 3 && File.ReadAllText(Path.Combine(directory, "log")).Contains("could not bind", StringComparison.Ordinal))
            {
                server.Port = RedisServer.FreePort();
            }
        }
    }

    public Task StartAgainAsync() => AsServerAsync("pg_ctl", "-D", DataDir, "-l", Path.Combine(_directory, "log"), "-w", "-t", "60", "start",
        "-o", $"-p {Port} -k {_directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200");

    /// <summary>Stops the server at once, as a crash would (immediate shutdown).</summary>
    public Task StopAsync() => AsServerAsync("pg_ctl", "-D", DataDir, "-m", "immediate", "-w", "stop");

    /// <summary>Freezes the server and its backends (SIGSTOP): connections stay open and every query hangs, as with a hung database.</summary>
    public Task FreezeAsync() => SignalAllAsync(Signals.Stop);

    /// <summary>Lets a frozen server run again (SIGCONT).</summary>
    public Task ThawAsync() => SignalAllAsync(Signals.Continue);

    private async Task SignalAllAsync(int signal)
    {
        var postmaster = (await File.ReadAllLinesAsync(Path.Combine(DataDir, "postmaster.pid")))[0].Trim();
        var pids = new List<string> { postmaster };
        foreach (var stat in Directory.EnumerateDirectories("/proc").Select(d => Path.Combine(d, "stat")))
        {
            try
            {
                // Field 4 of /proc/<pid>/stat is the parent's pid (after the command name in parentheses).
                var text = await File.ReadAllTextAsync(stat);
                var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
                if (fields[1] == postmaster)
                {
                    pids.Add(text[..text.IndexOf(' ')]);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentOutOfRangeException)
            {
            }
        }
        foreach (var pid in pids)
        {
            Signals.Send(int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture), signal);
        }
    }

    public async Task<string> CreateDatabaseAsync()
    {
        var name = "cp_" + Guid.NewGuid().ToString("N")[..12];
        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
        await command.ExecuteNonQueryAsync();
        return name;
    }

    private Task AsServerAsync(string tool, params string[] args)
    {
        var path = Path.Combine(_bin, tool);
        return IsRoot ? RunAsync("runuser", ["-u", "postgres", "--", path, .. args]) : RunAsync(path, args);
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = "/" };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(120));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({process.ExitCode}): {await stderr}{await stdout}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        catch (InvalidOperationException)
        {
            // Already stopped.
        }
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
