namespace ClaudeProxy.Gateway;

/// <summary>A count that only grows and can be awaited: how many items a background writer has stored so far.</summary>
internal sealed class Progress
{
    private readonly List<(long Count, TaskCompletionSource Done)> _waiters = [];
    private long _value;

    public long Value => Interlocked.Read(ref _value);

    public void Add(long added)
    {
        var value = Interlocked.Add(ref _value, added);
        lock (_waiters)
        {
            foreach (var (_, done) in _waiters.Where(w => w.Count <= value))
            {
                done.TrySetResult();
            }
            _waiters.RemoveAll(w => w.Count <= value);
        }
    }

    /// <summary>Completes once the count has reached <paramref name="count"/>.</summary>
    public Task WaitFor(long count)
    {
        lock (_waiters)
        {
            if (Value >= count)
            {
                return Task.CompletedTask;
            }
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((count, done));
            return done.Task;
        }
    }
}
