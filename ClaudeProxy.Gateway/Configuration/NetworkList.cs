using System.Net;

namespace ClaudeProxy.Gateway.Configuration;

/// <summary>Whether an address is in a list of networks read by <see cref="GatewayOptions.Networks"/>.</summary>
public static class NetworkList
{
    /// <summary>
    /// True when <paramref name="address"/> is in one of <paramref name="networks"/>. An IPv4 client on a dual-stack
    /// socket arrives as <c>::ffff:a.b.c.d</c>: it matches IPv4 networks as <c>a.b.c.d</c>, and an IPv4 address matches
    /// networks written in the mapped form. No address: false.
    /// </summary>
    public static bool Contains(IReadOnlyList<IPNetwork> networks, IPAddress? address)
    {
        if (address is null)
        {
            return false;
        }
        var other = address.IsIPv4MappedToIPv6 ? address.MapToIPv4()
            : address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? address.MapToIPv6()
            : null;
        foreach (var network in networks)
        {
            if (network.Contains(address) || (other is not null && network.Contains(other)))
            {
                return true;
            }
        }
        return false;
    }
}
