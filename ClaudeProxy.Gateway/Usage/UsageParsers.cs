using System.Buffers;
using System.IO.Compression;
using System.Text.Json;

namespace ClaudeProxy.Gateway.Usage;

/// <summary>Reads usage out of an answer as its bytes pass, in whatever pieces they come.</summary>
public interface IUsageParser : IDisposable
{
    void Feed(ReadOnlySpan<byte> data);

    /// <summary>Called once after the last byte; returns what was found.</summary>
    UsageResult Complete();
}

/// <summary>
/// What an answer said about usage. <see cref="OutputEstimated"/>: the answer ended before its final usage (the client
/// left, the upstream broke off, or it never reports usage), so the output was estimated from the text seen.
/// </summary>
public readonly record struct UsageResult(UsageCounts Counts, bool StreamError, bool OutputEstimated = false);

/// <summary>A growable pooled byte buffer.</summary>
internal struct PooledBuffer : IDisposable
{
    private byte[]? _array;
    public int Length;

    public readonly ReadOnlySpan<byte> Span => _array.AsSpan(0, Length);

    public void Append(ReadOnlySpan<byte> data)
    {
        if (_array is null || Length + data.Length > _array.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(Length + data.Length, Math.Max(256, (_array?.Length ?? 0) * 2)));
            Span.CopyTo(bigger);
            if (_array is not null)
            {
                ArrayPool<byte>.Shared.Return(_array);
            }
            _array = bigger;
        }
        data.CopyTo(_array.AsSpan(Length));
        Length += data.Length;
    }

    /// <summary>Keeps only the bytes from <paramref name="start"/> on.</summary>
    public void Drop(int start)
    {
        if (_array is null)
        {
            return;
        }
        _array.AsSpan(start, Length - start).CopyTo(_array);
        Length -= start;
    }

    public void Dispose()
    {
        if (_array is not null)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = null;
        }
        Length = 0;
    }
}

/// <summary>
/// Server-sent events: every complete <c>data:</c> line is read for its type and usage. message_start gives input
/// and cache counts, each message_delta replaces them with its non-null values and gives the cumulative output.
/// A stream that ends without a message_delta has its output estimated from the text its deltas carried (see
/// <see cref="OutputText"/>), as does a legacy completion stream, which reports no usage at all.
/// Only a line that spans two reads is copied.
/// </summary>
public sealed class SseUsageParser : IUsageParser
{
    private const int MaxLine = 16 * 1024 * 1024;
    private PooledBuffer _partial;
    private UsageCounts _total;
    private OutputText _text;
    private bool _started;
    private bool _final;
    private bool _completion;
    private bool _error;
    private bool _overflow;

    public void Feed(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var newline = data.IndexOf((byte)'\n');
            if (newline < 0)
            {
                if (_partial.Length + data.Length > MaxLine)
                {
                    _overflow = true;
                    _partial.Length = 0;
                }
                else if (!_overflow)
                {
                    _partial.Append(data);
                }
                return;
            }
            if (_partial.Length > 0 || _overflow)
            {
                if (!_overflow)
                {
                    _partial.Append(data[..newline]);
                    Line(_partial.Span);
                }
                _partial.Length = 0;
                _overflow = false;
            }
            else
            {
                Line(data[..newline]);
            }
            data = data[(newline + 1)..];
        }
    }

    private void Line(ReadOnlySpan<byte> line)
    {
        if (!line.StartsWith("data:"u8))
        {
            return;
        }
        var payload = line[5..];
        if (!payload.IsEmpty && payload[0] == (byte)' ')
        {
            payload = payload[1..];
        }
        if (!payload.IsEmpty && payload[^1] == (byte)'\r')
        {
            payload = payload[..^1];
        }
        var usage = default(UsageJson);
        var reader = new Utf8JsonReader(payload);
        try
        {
            while (reader.Read())
            {
                usage.OnToken(ref reader);
            }
        }
        catch (JsonException)
        {
            return;
        }
        _text.Add(usage.Text);
        switch (usage.Type)
        {
            case UsageJson.TopType.MessageStart:
                _total = usage.Counts;
                _started = true;
                break;
            case UsageJson.TopType.MessageDelta:
                _total.Merge(usage.Counts);
                _final = true;
                break;
            case UsageJson.TopType.Completion:
                _completion = true;
                break;
            case UsageJson.TopType.Error:
                _error = true;
                break;
        }
    }

    public UsageResult Complete()
    {
        if (_partial.Length > 0 && !_overflow)
        {
            Line(_partial.Span);
        }
        _partial.Length = 0;
        if ((_started && !_final) || (_completion && !_total.Any))
        {
            _total.EstimateOutput(_text);
            return new UsageResult(_total, _error, OutputEstimated: true);
        }
        return new UsageResult(_total, _error);
    }

    public void Dispose() => _partial.Dispose();
}

/// <summary>
/// A JSON answer, read incrementally with <see cref="Utf8JsonReader"/> state carried across reads: only the bytes
/// of a token cut by a read boundary are kept, never the whole answer. A message cut off before its usage, and a
/// legacy completion (which reports no usage), have their output estimated from the text seen.
/// </summary>
public sealed class JsonUsageParser : IUsageParser
{
    private const int MaxPending = 16 * 1024 * 1024;
    private PooledBuffer _pending;
    private JsonReaderState _state = new(new JsonReaderOptions { MaxDepth = 512 });
    private UsageJson _usage;
    private bool _failed;

    public void Feed(ReadOnlySpan<byte> data)
    {
        if (_failed)
        {
            return;
        }
        if (_pending.Length > 0)
        {
            _pending.Append(data);
            var consumed = Read(_pending.Span, final: false);
            _pending.Drop(consumed);
        }
        else
        {
            var consumed = Read(data, final: false);
            if (consumed < data.Length)
            {
                _pending.Append(data[consumed..]);
            }
        }
        if (_pending.Length > MaxPending)
        {
            _failed = true;
            _pending.Dispose();
        }
    }

    private int Read(ReadOnlySpan<byte> data, bool final)
    {
        var reader = new Utf8JsonReader(data, final, _state);
        try
        {
            while (reader.Read())
            {
                _usage.OnToken(ref reader);
            }
        }
        catch (JsonException)
        {
            _failed = true;
            return data.Length;
        }
        _state = reader.CurrentState;
        return (int)reader.BytesConsumed;
    }

    public UsageResult Complete()
    {
        if (_pending.Length > 0 && !_failed)
        {
            Read(_pending.Span, final: true);
        }
        _pending.Dispose();
        var counts = _usage.Counts;
        if ((_usage.Type == UsageJson.TopType.Message && counts.Output is null) || (_usage.Type == UsageJson.TopType.Completion && !counts.Any))
        {
            counts.EstimateOutput(_usage.Text);
            return new UsageResult(counts, false, OutputEstimated: true);
        }
        return new UsageResult(counts, _usage.Type == UsageJson.TopType.Error);
    }

    public void Dispose() => _pending.Dispose();
}

/// <summary>A compressed answer: the compressed bytes are kept and decompressed into the inner parser at the end.</summary>
public sealed class CompressedUsageParser(IUsageParser inner, string encoding) : IUsageParser
{
    private const int MaxCompressed = 32 * 1024 * 1024;
    private PooledBuffer _compressed;
    private bool _overflow;

    public void Feed(ReadOnlySpan<byte> data)
    {
        if (_overflow || _compressed.Length + data.Length > MaxCompressed)
        {
            _overflow = true;
            return;
        }
        _compressed.Append(data);
    }

    public UsageResult Complete()
    {
        if (!_overflow && _compressed.Length > 0)
        {
            var bytes = _compressed.Span.ToArray();
            try
            {
                using var source = new MemoryStream(bytes, writable: false);
                using Stream decompressor = encoding switch
                {
                    "br" => new BrotliStream(source, CompressionMode.Decompress),
                    "deflate" => new ZLibStream(source, CompressionMode.Decompress),
                    _ => new GZipStream(source, CompressionMode.Decompress),
                };
                var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
                try
                {
                    int read;
                    while ((read = decompressor.Read(buffer, 0, buffer.Length)) > 0)
                    {
                        inner.Feed(buffer.AsSpan(0, read));
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
            catch (InvalidDataException)
            {
                // A truncated or corrupt body (a client that left mid-answer): keep what was decoded.
            }
        }
        return inner.Complete();
    }

    public void Dispose()
    {
        _compressed.Dispose();
        inner.Dispose();
    }
}
