using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.DependencyInjection;
using IPNetwork = System.Net.IPNetwork;

namespace Microsoft.Extensions.Hosting;

/// <summary>
/// Lists of networks in settings (<c>TRUSTED_PROXIES</c>, <c>BOOTSTRAP_ALLOWED_NETWORKS</c>): how every service reads
/// them, matches an address against them, and believes forwarded headers from them alone.
/// </summary>
public static class NetworkList
{
    /// <summary>A comma list of CIDR networks or single addresses: "10.0.0.0/8, 192.168.1.7"; null when one item is neither.</summary>
    public static IReadOnlyList<IPNetwork>? Parse(string? raw)
    {
        var networks = new List<IPNetwork>();
        foreach (var item in string.IsNullOrWhiteSpace(raw) ? [] : raw.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (IPNetwork.TryParse(item, out var network))
            {
                networks.Add(network);
            }
            else if (IPAddress.TryParse(item, out var address))
            {
                networks.Add(new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128));
            }
            else
            {
                return null;
            }
        }
        return networks;
    }

    /// <summary>What a setting that <see cref="Parse"/> refused is told.</summary>
    public static string Malformed(string name) => $"{name} must be a comma-separated list of networks such as 10.0.0.0/8 or addresses such as 10.1.2.3.";

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
            : address.AddressFamily == AddressFamily.InterNetwork ? address.MapToIPv6()
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

    /// <summary>
    /// Believes <c>X-Forwarded-For/Proto/Host</c> from <paramref name="proxies"/> only (not even loopback by default),
    /// walking the chain from the nearest hop back until the first address that is not one of them: that one is the
    /// client. Call <c>UseForwardedHeaders</c> first in the pipeline when the list is not empty.
    /// </summary>
    public static IServiceCollection BelieveForwardedHeadersFrom(this IServiceCollection services, IReadOnlyList<IPNetwork> proxies) =>
        services.Configure<ForwardedHeadersOptions>(forwarded =>
        {
            forwarded.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto | ForwardedHeaders.XForwardedHost;
            forwarded.KnownIPNetworks.Clear();
            forwarded.KnownProxies.Clear();
            foreach (var network in proxies)
            {
                forwarded.KnownIPNetworks.Add(network);
            }
            forwarded.ForwardLimit = null;
        });
}
