using System.Runtime.InteropServices;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>POSIX signals to processes the tests started (Linux numbering).</summary>
public static partial class Signals
{
    public const int Terminate = 15;
    public const int Continue = 18;
    public const int Stop = 19;

    public static void Send(int pid, int signal)
    {
        if (Kill(pid, signal) != 0)
        {
            throw new InvalidOperationException($"could not send signal {signal} to process {pid} (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
