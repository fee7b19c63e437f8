namespace ClaudeProxy.Gateway;

/// <summary>A count that only grows and can be awaited: how many items a background writer has stored so far.</summary>
internal sealed class Progress
{
    private readonly List<(long Count, TaskCompletionSource Done)> _waiters = [];
    private long _value;
    // Waiters registered or registering: while none are, Add takes no lock. Each side changes its own variable with a
    // full fence before reading the other's, so a waiter either sees the new value or is seen by Add.
    private int _waiting;

    public long Value => Interlocked.Read(ref _value);

    public void Add(long added)
    {
        var value = Interlocked.Add(ref _value, added);
        if (Volatile.Read(ref _waiting) == 0)
        {
            return;
        }
        lock (_waiters)
        {
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Count <= value)
                {
                    _waiters[i].Done.TrySetResult();
                    _waiters.RemoveAt(i);
                    Interlocked.Decrement(ref _waiting);
                }
            }
        }
    }

    /// <summary>Completes once the count has reached <paramref name="count"/>.</summary>
    public Task WaitFor(long count)
    {
        lock (_waiters)
        {
            Interlocked.Increment(ref _waiting);
            if (Value >= count)
            {
                Interlocked.Decrement(ref _waiting);
                return Task.CompletedTask;
            }
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((count, done));
            return done.Task;
        }
    }
}
