using System.Net;
using System.Text;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Telemetry;
using Npgsql;

namespace ClaudeProxy.Gateway.Events;

/// <summary>
/// Sends due webhook deliveries, on every instance, never on a request's path. A dispatcher claims a few due deliveries
/// with <c>FOR UPDATE SKIP LOCKED</c> and marks them leased, so no two instances send one delivery at once; a lease
/// outlives the longest attempt, and a delivery whose instance died is taken again once it lapses. A 2xx answer
/// delivers; anything else (a timeout, a redirect, 4xx, 5xx) is retried with doubling waits until the retry window
/// ends, then the delivery is failed. Each attempt carries the event's id, so a receiver can drop a repeat.
/// </summary>
public sealed partial class WebhookDispatcher(NpgsqlDataSource dataSource, DeliverySignal signal, WebhookOptions options, BackgroundHealth health,
    TimeProvider time, ILogger<WebhookDispatcher> logger) : BackgroundService
{
    public const string Service = "webhook-dispatcher";
    private const int MaxClaim = 16;
    private const int MaxError = 500;

    private const string ClaimSql = """
        WITH due AS (
            SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints w ON w.webhook_id = d.webhook_id AND w.enabled
            WHERE d.status = 'pending' AND d.next_attempt_at <= @now AND (d.leased_until IS NULL OR d.leased_until < @now)
            ORDER BY d.next_attempt_at
            LIMIT @limit
            FOR UPDATE OF d SKIP LOCKED)
        UPDATE webhook_deliveries d SET leased_until = @lease, lease_token = @token
        FROM due, gateway_events e, webhook_endpoints w
        WHERE d.id = due.id AND e.id = d.event_id AND w.webhook_id = d.webhook_id
        RETURNING d.id, d.attempts, d.retry_until, e.id, e.type, e.time, e.data::text, w.url, w.secret, w.format
        """;

    private const string DeliveredSql = """
        UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_status_code = @code, last_error = NULL,
            last_attempt_at = @now, delivered_at = @now, leased_until = NULL, lease_token = NULL
        WHERE id = @id AND lease_token = @token
        """;

    private const string RetrySql = """
        UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = @code, last_error = @error, last_attempt_at = @now,
            status = CASE WHEN @next > retry_until THEN 'failed' ELSE 'pending' END, next_attempt_at = @next,
            leased_until = NULL, lease_token = NULL
        WHERE id = @id AND lease_token = @token
        """;

    private readonly HttpClient _client = new(new SocketsHttpHandler
    {
        AllowAutoRedirect = false,
        UseCookies = false,
        UseProxy = false,
        AutomaticDecompression = DecompressionMethods.None,
        ConnectTimeout = options.Timeout,
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        MaxResponseHeadersLength = 64,
    })
    {
        Timeout = options.Timeout,
        MaxResponseContentBufferSize = 64 * 1024,
    };

    private sealed record Due(long Id, int Attempts, DateTimeOffset RetryUntil, string EventId, string Type, DateTimeOffset Time, string Data,
        string Url, string Secret, string Format);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var claimed = 0;
                try
                {
                    claimed = await RunOnceAsync(stoppingToken);
                    if (health.Succeeded(Service))
                    {
                        LogBack(logger);
                    }
                }
                catch (Exception e) when (!stoppingToken.IsCancellationRequested)
                {
                    if (health.Failed(Service, e))
                    {
                        LogFailed(logger, BackgroundHealth.Describe(e));
                    }
                }
                if (claimed < MaxClaim)
                {
                    await signal.WaitAsync(options.Poll, time, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Claims what is due and sends it; returns how many deliveries were claimed.</summary>
    internal async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var token = Guid.NewGuid();
        var due = await ClaimAsync(token, cancellationToken);
        await Task.WhenAll(due.Select(d => AttemptAsync(d, token, cancellationToken)));
        return due.Count;
    }

    private async Task<List<Due>> ClaimAsync(Guid token, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var command = dataSource.CreateCommand(ClaimSql);
        command.Parameters.AddWithValue("now", now);
        command.Parameters.AddWithValue("lease", now + options.Lease);
        command.Parameters.AddWithValue("token", token);
        command.Parameters.AddWithValue("limit", MaxClaim);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var due = new List<Due>();
        while (await reader.ReadAsync(cancellationToken))
        {
            due.Add(new Due(reader.GetInt64(0), reader.GetInt32(1), reader.GetFieldValue<DateTimeOffset>(2), reader.GetString(3), reader.GetString(4),
                reader.GetFieldValue<DateTimeOffset>(5), reader.GetString(6), reader.GetString(7), reader.GetString(8), reader.GetString(9)));
        }
        return due;
    }

    private async Task AttemptAsync(Due due, Guid token, CancellationToken cancellationToken)
    {
        var (code, error) = await SendAsync(due, cancellationToken);
        var now = time.GetUtcNow();
        var delivered = code is >= 200 and < 300;
        await using var command = dataSource.CreateCommand(delivered ? DeliveredSql : RetrySql);
        command.Parameters.AddWithValue("id", due.Id);
        command.Parameters.AddWithValue("token", token);
        command.Parameters.AddWithValue("now", now);
        command.Parameters.AddWithValue("code", code is int c ? c : DBNull.Value);
        if (!delivered)
        {
            command.Parameters.AddWithValue("error", error ?? $"HTTP {code}");
            command.Parameters.AddWithValue("next", now + options.RetryAfter(due.Attempts + 1));
        }
        await command.ExecuteNonQueryAsync(cancellationToken);
        if (!delivered)
        {
            LogAttemptFailed(logger, due.Id, due.Type, due.Attempts + 1, error ?? $"HTTP {code}");
        }
    }

    private async Task<(int? Code, string? Error)> SendAsync(Due due, CancellationToken cancellationToken)
    {
        var body = WebhookPayloads.Body(due.Format, due.EventId, due.Type, due.Time, due.Data);
        var timestamp = time.GetUtcNow().ToUnixTimeSeconds();
        using var request = new HttpRequestMessage(HttpMethod.Post, due.Url)
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.TryAddWithoutValidation("webhook-id", due.EventId);
        request.Headers.TryAddWithoutValidation("webhook-timestamp", timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.TryAddWithoutValidation("webhook-signature", WebhookSignature.Sign(due.Secret, due.EventId, timestamp, body));
        request.Headers.UserAgent.ParseAdd("ClaudeProxy-Webhooks/1");
        try
        {
            // Only the status matters: the answer's body is never read.
            using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            return ((int)response.StatusCode, null);
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, $"no answer within {options.Timeout.TotalSeconds:0.#} s");
        }
        catch (HttpRequestException e)
        {
            var text = BackgroundHealth.Describe(e);
            return (null, text.Length <= MaxError ? text : text[..MaxError]);
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Webhook deliveries cannot be claimed ({Reason}); this instance tries again")]
    private static partial void LogFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Webhook deliveries are claimed again")]
    private static partial void LogBack(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Webhook delivery {Id} ({Type}) attempt {Attempt} failed: {Error}")]
    private static partial void LogAttemptFailed(ILogger logger, long id, string type, int attempt, string error);
}
