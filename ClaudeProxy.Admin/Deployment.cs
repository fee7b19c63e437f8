using Microsoft.AspNetCore.DataProtection;

namespace ClaudeProxy.Admin;

/// <summary>What running in a cluster behind a TLS-terminating ingress needs: shared cookie keys, Secure cookies, believed proxies.</summary>
public static class Deployment
{
    /// <summary>The application name every instance protects its cookies under, so any of them reads another's.</summary>
    public const string ApplicationName = "ClaudeProxy.Admin";

    /// <summary>
    /// Keeps the Data Protection keys (which encrypt the sign-in and antiforgery cookies) in
    /// <c>DATA_PROTECTION_KEYS_DIR</c>, so sign-ins survive a restart and every instance reading the folder accepts
    /// them. The folder is checked now: a key ring that cannot be written fails later, on the first sign-in.
    /// </summary>
    public static void AddKeyStorage(this WebApplicationBuilder builder, AdminOptions options)
    {
        if (options.KeysDirectory is not { } path)
        {
            return;
        }
        builder.Services.AddDataProtection()
            .PersistKeysToFileSystem(PrepareKeysDirectory(path))
            .SetApplicationName(ApplicationName);
    }

    /// <summary>Believes forwarded headers from <c>TRUSTED_PROXIES</c> only, and makes cookies Secure under <c>ADMIN_SECURE_COOKIES</c>.</summary>
    public static void AddIngressSettings(this WebApplicationBuilder builder, AdminOptions options)
    {
        if (options.TrustedProxies.Count > 0)
        {
            builder.Services.BelieveForwardedHeadersFrom(options.TrustedProxies);
        }
        if (options.SecureCookies)
        {
            // The cookie policy marks cookies as they are written. Setting AntiforgeryOptions.Cookie.SecurePolicy to
            // Always instead would make antiforgery refuse every request the app sees as http, which is each one
            // behind a TLS-terminating ingress unless TRUSTED_PROXIES is set as well.
            builder.Services.Configure<CookiePolicyOptions>(policy => policy.Secure = CookieSecurePolicy.Always);
        }
    }

    /// <summary>The forwarded headers and the cookie policy, first in the pipeline so that everything after sees their result.</summary>
    public static void UseIngressSettings(this WebApplication app, AdminOptions options)
    {
        if (options.TrustedProxies.Count > 0)
        {
            app.UseForwardedHeaders();
        }
        if (options.SecureCookies)
        {
            app.UseCookiePolicy();
        }
        if (options.KeysDirectory is null)
        {
            app.Logger.LogWarning("DATA_PROTECTION_KEYS_DIR is not set: the keys that protect sign-in cookies are not kept in a shared, persistent folder, so sign-ins do not survive a restart of the container and another instance does not accept them");
        }
    }

    /// <summary>Creates the folder if missing (owner-only on Unix, since it holds the keys unencrypted) and proves it can be written.</summary>
    internal static DirectoryInfo PrepareKeysDirectory(string path)
    {
        try
        {
            var full = Path.GetFullPath(path);
            if (!Directory.Exists(full))
            {
                if (OperatingSystem.IsWindows())
                {
                    Directory.CreateDirectory(full);
                }
                else
                {
                    Directory.CreateDirectory(full, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                }
            }
            var probe = Path.Combine(full, $".write-check-{Guid.NewGuid():N}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
            return new DirectoryInfo(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new AdminConfigurationException($"DATA_PROTECTION_KEYS_DIR ({path}) cannot be created or written, so sign-in keys could not be kept: {e.Message}");
        }
    }
}
