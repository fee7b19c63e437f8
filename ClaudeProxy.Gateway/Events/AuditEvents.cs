using ClaudeProxy.Contracts;

namespace ClaudeProxy.Gateway.Events;

/// <summary>Which event a management write announces.</summary>
internal static class AuditEvents
{
    /// <summary>The event a management write announces once it is stored, by its audit action; null when it announces none.</summary>
    public static string? For(string action) => action switch
    {
        "register" => EventTypes.DeviceEnrolled,
        "approve" => EventTypes.DeviceApproved,
        "revoke" => EventTypes.DeviceRevoked,
        "restore" => EventTypes.DeviceRestored,
        "deactivate" => EventTypes.UserDeactivated,
        "reactivate" => EventTypes.UserReactivated,
        "policy" or "group_create" or "group_policy" or "group_delete" or "group_member_add" or "group_member_remove" or "group_caps"
            or "spend_limit_create" or "spend_limit_replace" or "spend_limit_delete" => EventTypes.PolicyChanged,
        _ => null,
    };
}
