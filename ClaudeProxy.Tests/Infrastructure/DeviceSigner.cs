using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;

namespace ClaudeProxy.Tests.Infrastructure;

/// <summary>A device's P-256 key, signing /bootstrap and /refresh requests the way the gateway checks them.</summary>
public sealed class DeviceSigner : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public string PublicKey => Convert.ToBase64String(_key.ExportSubjectPublicKeyInfo());

    /// <summary>The body of a bootstrap that enrols this key.</summary>
    public string EnrolBody(string deviceId) => $$"""{"device_id":"{{deviceId}}","app_version":"test","public_key":"{{PublicKey}}","key_algorithm":"p256"}""";

    /// <summary>A signed POST; <paramref name="signedBody"/> is what the signature covers (the body sent, unless a test says otherwise).</summary>
    public HttpRequestMessage Post(string path, string body, string? bearer = null, DateTimeOffset? at = null, string? nonce = null, string? signedBody = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body)) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }
        var timestamp = (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        nonce ??= Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
        var message = string.Join('\n', "claudeproxy-device-v1", "POST", path, timestamp, nonce,
            Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(signedBody ?? body))));
        var signature = _key.SignData(Encoding.ASCII.GetBytes(message), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        request.Headers.Add("x-device-timestamp", timestamp);
        request.Headers.Add("x-device-nonce", nonce);
        request.Headers.Add("x-device-signature", Convert.ToBase64String(signature));
        return request;
    }

    /// <summary>The same request again, header for header and byte for byte.</summary>
    public static async Task<HttpRequestMessage> CopyAsync(HttpRequestMessage original)
    {
        var copy = new HttpRequestMessage(original.Method, original.RequestUri)
        {
            Content = new ByteArrayContent(await original.Content!.ReadAsByteArrayAsync()),
        };
        copy.Content.Headers.ContentType = original.Content.Headers.ContentType;
        foreach (var (name, values) in original.Headers)
        {
            copy.Headers.TryAddWithoutValidation(name, values);
        }
        return copy;
    }

    public void Dispose() => _key.Dispose();
}
