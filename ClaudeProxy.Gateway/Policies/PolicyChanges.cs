namespace ClaudeProxy.Gateway.Policies;

/// <summary>
/// Tells every gateway instance that groups, memberships or spend limits changed, so that each reloads the policy
/// it admits requests under. The management APIs call <see cref="ChangedAsync"/> after each write they commit.
/// </summary>
public class PolicyChanges
{
    /// <summary>Reloads this instance's policy before returning, and tells the others.</summary>
    public virtual Task ChangedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
