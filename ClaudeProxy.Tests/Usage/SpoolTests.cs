using ClaudeProxy.Gateway.Usage;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Usage;

/// <summary>The usage spool shared by several processes and databases: appends never fail, replay takes only its own database's files, bad files are set aside.</summary>
public sealed class SpoolTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private static readonly SpoolDatabase DatabaseA = SpoolDatabase.From("Host=db.example;Port=5432;Database=usage_a", "default");
    private static readonly SpoolDatabase DatabaseB = SpoolDatabase.From("Host=db.example;Port=5432;Database=usage_b", "default");
    private readonly string _dir = Directory.CreateTempSubdirectory("claudeproxy-spooltest-").FullName;

    private UsageSpool Spool(SpoolDatabase database) => new(new SpoolLocation(_dir, database));

    private static List<UsageEvent> Events(int count) => [.. Enumerable.Range(0, count).Select(_ => TestEvents.Usage())];

    private static async Task<List<UsageEvent>> ReplayAsync(UsageSpool spool, List<string>? refused = null)
    {
        var stored = new List<UsageEvent>();
        await spool.ReplayAsync((batch, _) =>
        {
            stored.AddRange(batch);
            return Task.CompletedTask;
        }, (line, reason, _) =>
        {
            refused?.Add(line);
            return Task.CompletedTask;
        }).WaitAsync(Wait);
        return stored;
    }

    [Fact]
    public async Task Two_writers_on_one_folder_with_different_databases_replay_only_their_own()
    {
        var a = Spool(DatabaseA);
        var b = Spool(DatabaseB);
        var ofA = Events(30);
        var ofB = Events(20);
        a.Append(ofA);
        b.Append(ofB);
        a.Dispose();
        b.Dispose();

        // New processes, one per database, on the same folder; each writer of before is gone.
        using var nextA = Spool(DatabaseA);
        Assert.Equal(ofA.Select(e => e.Id).Order(), (await ReplayAsync(nextA)).Select(e => e.Id).Order());
        Assert.Empty(await ReplayAsync(nextA));
        using var nextB = Spool(DatabaseB);
        Assert.Equal(ofB.Select(e => e.Id).Order(), (await ReplayAsync(nextB)).Select(e => e.Id).Order());
        Assert.Empty(Directory.EnumerateFiles(_dir, "usage-*"));
    }

    [Fact]
    public async Task Appending_while_another_process_replays_never_throws_and_loses_nothing()
    {
        // A writer that died with events on disk, a live writer, and a replayer of the same database.
        var gone = Spool(DatabaseA);
        var ofGone = Events(50);
        gone.Append(ofGone);
        gone.Dispose();
        using var writer = Spool(DatabaseA);
        var written = Events(5);
        writer.Append(written);
        using var replayer = Spool(DatabaseA);

        var inStore = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var replayed = new List<UsageEvent>();
        var replay = replayer.ReplayAsync(async (batch, _) =>
        {
            inStore.TrySetResult();
            await release.Task;
            replayed.AddRange(batch);
        }, (_, _, _) => Task.CompletedTask);
        await inStore.Task.WaitAsync(Wait);
        // The replayer is in the middle of a file (Postgres slow): the writer appends, many times, without an exception.
        for (var i = 0; i < 20; i++)
        {
            var more = Events(10);
            writer.Append(more);
            written.AddRange(more);
        }
        release.SetResult();
        await replay.WaitAsync(Wait);
        Assert.Equal(ofGone.Select(e => e.Id).Order(), replayed.Select(e => e.Id).Order());

        // A live writer's file is its own; once its process is gone, any replayer of the database takes it.
        writer.Dispose();
        var rest = await ReplayAsync(replayer);
        Assert.Equal(written.Select(e => e.Id).Order(), rest.Select(e => e.Id).Order());
    }

    [Fact]
    public async Task A_writer_whose_file_was_taken_starts_a_new_one()
    {
        using var writer = Spool(DatabaseA);
        var first = Events(3);
        writer.Append(first);
        // Its own replay takes the file; the next append must not write into the taken file.
        var inStore = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var replayed = new List<UsageEvent>();
        var replay = writer.ReplayAsync(async (batch, _) =>
        {
            inStore.TrySetResult();
            await release.Task;
            replayed.AddRange(batch);
        }, (_, _, _) => Task.CompletedTask);
        await inStore.Task.WaitAsync(Wait);
        var second = Events(4);
        writer.Append(second);
        release.SetResult();
        await replay.WaitAsync(Wait);
        Assert.Equal(first.Select(e => e.Id).Order(), replayed.Select(e => e.Id).Order());
        Assert.Equal(second.Select(e => e.Id).Order(), (await ReplayAsync(writer)).Select(e => e.Id).Order());
    }

    [Fact]
    public async Task Unreadable_and_foreign_files_are_quarantined_or_left_and_never_block_the_files_behind_them()
    {
        var gone = Spool(DatabaseA);
        var good = Events(10);
        gone.Append(good);
        gone.Dispose();
        var foreign = Spool(DatabaseB);
        foreign.Append(Events(3));
        foreign.Dispose();
        // Sorted before the good file: garbage, a file of an older version without a header, and binary junk.
        await File.WriteAllTextAsync(Path.Combine(_dir, "usage-0000000000000000-000001.jsonl"), "this is not a spool file\n{\"id\":1}\n");
        await File.WriteAllTextAsync(Path.Combine(_dir, "usage-00000000000000000000000000000000.jsonl"), "{\"Id\":\"x\"}\n");
        await File.WriteAllBytesAsync(Path.Combine(_dir, "usage-0000000000000001-000001.jsonl"), [0xff, 0xfe, 0x00, 0x01, 0x0a]);

        using var replayer = Spool(DatabaseA);
        var refused = new List<string>();
        var stored = await ReplayAsync(replayer, refused);
        Assert.Equal(good.Select(e => e.Id).Order(), stored.Select(e => e.Id).Order());
        var quarantined = Directory.EnumerateFiles(_dir, "*.quarantined").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["usage-0000000000000000-000001.jsonl.quarantined", "usage-00000000000000000000000000000000.jsonl.quarantined",
            "usage-0000000000000001-000001.jsonl.quarantined"], quarantined);
        Assert.All(quarantined, q => Assert.Contains("quarantined", File.ReadAllText(Path.Combine(_dir, q + ".reason"))));
        Assert.Equal(3, replayer.QuarantinedFiles);
        // The other database's file is left for its own gateways.
        Assert.Single(Directory.EnumerateFiles(_dir, "usage-*.jsonl"));
        Assert.Empty(await ReplayAsync(replayer));
    }

    [Fact]
    public async Task A_corrupt_line_in_the_middle_is_refused_and_a_torn_last_line_is_dropped()
    {
        var gone = Spool(DatabaseA);
        var good = Events(4);
        gone.Append(good[..2]);
        var file = Directory.EnumerateFiles(_dir, "usage-*.jsonl").Single();
        await File.AppendAllTextAsync(file, "{\"broken\": \n");
        gone.Append(good[2..]);
        await File.AppendAllTextAsync(file, "{\"id\":\"0000");
        gone.Dispose();

        using var replayer = Spool(DatabaseA);
        var refused = new List<string>();
        Assert.Equal(good.Select(e => e.Id).Order(), (await ReplayAsync(replayer, refused)).Select(e => e.Id).Order());
        Assert.Equal(["{\"broken\": "], refused);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void The_default_folder_is_private_and_belongs_to_one_deployment()
    {
        var state = Path.Combine(_dir, "state");
        IConfiguration Config(string org, params (string, string)[] more) => new ConfigurationBuilder().AddInMemoryCollection(
            new Dictionary<string, string?>(more.Select(kv => new KeyValuePair<string, string?>(kv.Item1, kv.Item2))) { ["ORG_ID"] = org }).Build();

        var first = UsageSpool.Locate(Config("acme", ("XDG_STATE_HOME", state)), "Host=db1;Database=usage");
        Assert.StartsWith(Path.Combine(state, "claudeproxy") + "/", first.Directory);
        Assert.Equal(PrivateMode, File.GetUnixFileMode(first.Directory));
        Assert.Equal(PrivateMode, File.GetUnixFileMode(Path.GetDirectoryName(first.Directory)!));
        Assert.NotEqual(first.Directory, UsageSpool.Locate(Config("acme", ("XDG_STATE_HOME", state)), "Host=db2;Database=usage").Directory);
        Assert.NotEqual(first.Directory, UsageSpool.Locate(Config("other-org", ("XDG_STATE_HOME", state)), "Host=db1;Database=usage").Directory);

        // Without a state folder: the temporary folder, under a per-user folder, both private.
        var temp = Path.Combine(_dir, "tmp");
        Directory.CreateDirectory(temp);
        var fallback = UsageSpool.Locate(Config("acme", ("TMPDIR", temp), ("HOME", "/")), "Host=db1;Database=usage");
        Assert.StartsWith(Path.Combine(temp, "claudeproxy-"), fallback.Directory);
        Assert.Equal(PrivateMode, File.GetUnixFileMode(fallback.Directory));
        Assert.Equal(PrivateMode, File.GetUnixFileMode(Path.GetDirectoryName(fallback.Directory)!));

        // USAGE_SPOOL_DIR wins, and an existing folder open to everyone is made private.
        var configured = Path.Combine(_dir, "configured");
        Directory.CreateDirectory(configured);
        File.SetUnixFileMode(configured, (UnixFileMode)0b111_111_111);
        Assert.Equal(configured, UsageSpool.Locate(Config("acme", ("USAGE_SPOOL_DIR", configured), ("XDG_STATE_HOME", state)), "Host=db1;Database=usage").Directory);
        Assert.Equal(PrivateMode, File.GetUnixFileMode(configured));
    }

    private const UnixFileMode PrivateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
