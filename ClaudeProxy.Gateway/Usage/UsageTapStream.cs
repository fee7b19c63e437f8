using System.Diagnostics;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>
/// The response body as YARP writes it: each piece goes to the client first, then to the usage parser (also when the
/// client could not take it). Nothing is held back. The parser is chosen at the first write, when the response
/// headers are known.
/// </summary>
public sealed class UsageTapStream(Stream inner, HttpResponse response) : Stream
{
    private IUsageParser? _parser;
    private bool _started;

    public long FirstByteTimestamp { get; private set; }
    public long Bytes { get; private set; }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => Bytes; set => throw new NotSupportedException(); }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Start();
        try
        {
            await inner.WriteAsync(buffer, cancellationToken);
        }
        finally
        {
            // Read even when the client has gone: the upstream sent these bytes, and bills them.
            Observe(buffer.Span);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        Start();
        try
        {
            inner.Write(buffer, offset, count);
        }
        finally
        {
            Observe(buffer.AsSpan(offset, count));
        }
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    /// <summary>What the answer said about usage; call once, after forwarding ended.</summary>
    public UsageResult Complete()
    {
        if (_parser is null)
        {
            return default;
        }
        var result = _parser.Complete();
        _parser.Dispose();
        _parser = null;
        return result;
    }

    private void Start()
    {
        if (_started)
        {
            return;
        }
        _started = true;
        FirstByteTimestamp = Stopwatch.GetTimestamp();
        var contentType = response.ContentType ?? "";
        IUsageParser parser = contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase)
            ? new SseUsageParser()
            : new JsonUsageParser();
        var encoding = response.Headers.ContentEncoding.ToString().Trim().ToLowerInvariant();
        _parser = encoding is "" or "identity" ? parser : new CompressedUsageParser(parser, encoding);
    }

    private void Observe(ReadOnlySpan<byte> data)
    {
        Bytes += data.Length;
        _parser?.Feed(data);
    }

    protected override void Dispose(bool disposing)
    {
        _parser?.Dispose();
        _parser = null;
        base.Dispose(disposing);
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
