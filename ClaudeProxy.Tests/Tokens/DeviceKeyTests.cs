using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace ClaudeProxy.Tests.Tokens;

public sealed class DeviceKeyTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private const string OperatorKey = "operator-key-0123456789-abcdefghij";

    private async Task<(GatewayHost Gateway, string Db)> StartAsync(Action<Dictionary<string, string?>>? configure = null)
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var gateway = await fx.GatewayAsync(db, s =>
        {
            s["ADMIN_API_KEY"] = OperatorKey;
            // Every test here comes from 127.0.0.1 to one Redis: the per-address budget is not what is tested.
            s["BOOTSTRAP_RATE_LIMIT"] = "100000";
            configure?.Invoke(s);
        });
        return (gateway, db);
    }

    private static async Task<string> TokenAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        return json.RootElement.GetProperty("wrapper_token").GetString()!;
    }

    private static async Task<string> EnrolAsync(GatewayHost gateway, DeviceSigner key, string deviceId)
    {
        using var response = await gateway.Client.SendAsync(key.Post("/bootstrap", key.EnrolBody(deviceId)));
        return await TokenAsync(response);
    }

    private static string BareBody(string deviceId) => $$"""{"device_id":"{{deviceId}}"}""";

    private async Task<string?> StoredKeyAsync(string db, string deviceId) =>
        await fx.ScalarAsync<object>(db, "SELECT public_key FROM devices WHERE device_id = @id", ("id", deviceId)) as string;

    [Fact]
    public async Task A_device_that_enrolled_a_key_cannot_be_bootstrapped_or_refreshed_by_its_id_alone()
    {
        var (gateway, db) = await StartAsync();
        using var key = new DeviceSigner();
        var device = TestSecrets.DeviceId("alice");
        var token = await EnrolAsync(gateway, key, device);
        Assert.Equal(key.PublicKey, await StoredKeyAsync(db, device));
        Assert.Equal("p256", await fx.ScalarAsync<string>(db, "SELECT key_algorithm FROM devices WHERE device_id = @id", ("id", device)));

        using (var bare = await gateway.Client.SendAsync(Http.Post("/bootstrap", BareBody(device))))
        {
            var (_, message) = await Http.AssertErrorAsync(bare, 401, "authentication_error");
            Assert.Contains("enrolled a key", message);
        }
        using (var unsignedRefresh = await gateway.Client.SendAsync(Http.Post("/refresh", "", bearer: token)))
        {
            await Http.AssertErrorAsync(unsignedRefresh, 401, "authentication_error");
        }
        // With the key, both go on working; a later bootstrap need not send the key again.
        using (var signed = await gateway.Client.SendAsync(key.Post("/bootstrap", BareBody(device))))
        {
            await TokenAsync(signed);
        }
        using (var refreshed = await gateway.Client.SendAsync(key.Post("/refresh", "", bearer: token)))
        {
            var fresh = await TokenAsync(refreshed);
            using var call = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: fresh));
            Assert.Equal(HttpStatusCode.OK, call.StatusCode);
        }
    }

    [Fact]
    public async Task Enrolling_needs_proof_of_the_private_key_and_a_refused_enrolment_leaves_no_record()
    {
        var (gateway, db) = await StartAsync();
        using var key = new DeviceSigner();
        using var other = new DeviceSigner();
        var device = TestSecrets.DeviceId("pop");
        using (var unsigned = await gateway.Client.SendAsync(Http.Post("/bootstrap", key.EnrolBody(device))))
        {
            var (_, message) = await Http.AssertErrorAsync(unsigned, 401, "authentication_error");
            Assert.Contains("sign", message);
        }
        // Someone who knows only the public key signs with their own key.
        using (var wrongKey = await gateway.Client.SendAsync(other.Post("/bootstrap", key.EnrolBody(device))))
        {
            var (_, message) = await Http.AssertErrorAsync(wrongKey, 401, "authentication_error");
            Assert.Contains("does not verify", message);
        }
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices WHERE device_id = @id", ("id", device)));
    }

    [Fact]
    public async Task A_replayed_signed_request_is_refused_on_this_and_on_another_instance()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var a = await fx.GatewayAsync(db, s => s["BOOTSTRAP_RATE_LIMIT"] = "100000");
        var b = await fx.GatewayAsync(db, s => s["BOOTSTRAP_RATE_LIMIT"] = "100000");
        using var key = new DeviceSigner();
        var device = TestSecrets.DeviceId("replay");
        using var original = key.Post("/bootstrap", key.EnrolBody(device));
        using var again = await DeviceSigner.CopyAsync(original);
        using var elsewhere = await DeviceSigner.CopyAsync(original);
        using (var first = await a.Client.SendAsync(original))
        {
            await TokenAsync(first);
        }
        using (var replay = await a.Client.SendAsync(again))
        {
            var (_, message) = await Http.AssertErrorAsync(replay, 401, "authentication_error");
            Assert.Contains("already used", message);
        }
        using (var replayElsewhere = await b.Client.SendAsync(elsewhere))
        {
            await Http.AssertErrorAsync(replayElsewhere, 401, "authentication_error");
        }
    }

    [Fact]
    public async Task A_stale_or_future_timestamp_is_refused()
    {
        var (gateway, db) = await StartAsync();
        using var key = new DeviceSigner();
        var device = TestSecrets.DeviceId("stale");
        foreach (var at in new[] { DateTimeOffset.UtcNow.AddSeconds(-120), DateTimeOffset.UtcNow.AddSeconds(120) })
        {
            using var response = await gateway.Client.SendAsync(key.Post("/bootstrap", key.EnrolBody(device), at: at));
            var (_, message) = await Http.AssertErrorAsync(response, 401, "authentication_error");
            Assert.Contains("clock", message);
        }
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices WHERE device_id = @id", ("id", device)));
        // Within the allowed skew it is accepted.
        using var slightlyBehind = await gateway.Client.SendAsync(key.Post("/bootstrap", key.EnrolBody(device), at: DateTimeOffset.UtcNow.AddSeconds(-30)));
        await TokenAsync(slightlyBehind);
    }

    [Fact]
    public async Task A_signature_over_another_body_is_refused()
    {
        var (gateway, _) = await StartAsync();
        using var key = new DeviceSigner();
        var device = TestSecrets.DeviceId("body");
        var token = await EnrolAsync(gateway, key, device);
        // The signature is genuine, for a request naming another user: the body actually sent differs.
        var signedFor = $$"""{"device_id":"{{device}}","user_id":"alice"}""";
        var sent = $$"""{"device_id":"{{device}}","user_id":"mallory"}""";
        using (var response = await gateway.Client.SendAsync(key.Post("/bootstrap", sent, signedBody: signedFor)))
        {
            var (_, message) = await Http.AssertErrorAsync(response, 401, "authentication_error");
            Assert.Contains("does not verify", message);
        }
        using (var refresh = await gateway.Client.SendAsync(key.Post("/refresh", "{}", bearer: token, signedBody: "")))
        {
            await Http.AssertErrorAsync(refresh, 401, "authentication_error");
        }
        // A signature made for /refresh does not open /bootstrap.
        using var forRefresh = key.Post("/refresh", BareBody(device));
        forRefresh.RequestUri = new Uri("/bootstrap", UriKind.Relative);
        using var moved = await gateway.Client.SendAsync(forRefresh);
        await Http.AssertErrorAsync(moved, 401, "authentication_error");
    }

    [Fact]
    public async Task Another_key_cannot_be_swapped_in_for_an_enrolled_device()
    {
        var (gateway, db) = await StartAsync();
        using var alice = new DeviceSigner();
        using var mallory = new DeviceSigner();
        var device = TestSecrets.DeviceId("swap");
        await EnrolAsync(gateway, alice, device);
        using (var swap = await gateway.Client.SendAsync(mallory.Post("/bootstrap", mallory.EnrolBody(device))))
        {
            var (_, message) = await Http.AssertErrorAsync(swap, 401, "authentication_error");
            Assert.Contains("different key", message);
        }
        // Mallory's signature over a bootstrap that sends no key is checked against Alice's key.
        using (var noKey = await gateway.Client.SendAsync(mallory.Post("/bootstrap", BareBody(device))))
        {
            await Http.AssertErrorAsync(noKey, 401, "authentication_error");
        }
        Assert.Equal(alice.PublicKey, await StoredKeyAsync(db, device));
    }

    public static TheoryData<string, string> MalformedKeys()
    {
        using var rsa = RSA.Create(2048);
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        return new()
        {
            { "not base64 !!!", "p256" },
            { new string('A', 12_000), "p256" },
            { Convert.ToBase64String(RandomNumberGenerator.GetBytes(91)), "p256" },
            { Convert.ToBase64String(rsa.ExportSubjectPublicKeyInfo()), "p256" },
            { Convert.ToBase64String(p384.ExportSubjectPublicKeyInfo()), "p256" },
            { "", "p256" },
        };
    }

    [Theory]
    [MemberData(nameof(MalformedKeys))]
    public async Task A_garbage_or_huge_key_gets_400_and_no_record(string publicKey, string algorithm)
    {
        var (gateway, db) = await StartAsync();
        using var key = new DeviceSigner();
        var device = TestSecrets.DeviceId("junk");
        var body = JsonSerializer.Serialize(new { device_id = device, public_key = publicKey, key_algorithm = algorithm });
        using var response = await gateway.Client.SendAsync(key.Post("/bootstrap", body));
        var (_, message) = await Http.AssertErrorAsync(response, 400, "invalid_request_error");
        Assert.Contains("public_key", message);
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices"));
    }

    [Fact]
    public async Task Malformed_signature_headers_and_algorithms_get_400()
    {
        var (gateway, db) = await StartAsync();
        using var key = new DeviceSigner();
        var device = TestSecrets.DeviceId("hdr");
        var enrol = key.EnrolBody(device);
        var cases = new List<(string What, Action<HttpRequestMessage> Spoil, string Body)>
        {
            ("signature not base64", r => Replace(r, "x-device-signature", "%%%not-base64%%%"), enrol),
            ("signature huge", r => Replace(r, "x-device-signature", new string('A', 4000)), enrol),
            ("nonce too short", r => Replace(r, "x-device-nonce", "abc"), enrol),
            ("nonce with spaces", r => Replace(r, "x-device-nonce", "abcdefgh ijklmnopq"), enrol),
            ("timestamp not a number", r => Replace(r, "x-device-timestamp", "yesterday"), enrol),
            ("timestamp negative", r => Replace(r, "x-device-timestamp", "-5"), enrol),
            ("headers partial", r => r.Headers.Remove("x-device-nonce"), enrol),
            ("algorithm unknown", _ => { }, enrol.Replace("\"p256\"", "\"rsa\"")),
            ("key not a string", _ => { }, $$"""{"device_id":"{{device}}","public_key":12}"""),
        };
        foreach (var (what, spoil, body) in cases)
        {
            using var request = key.Post("/bootstrap", body);
            spoil(request);
            using var response = await gateway.Client.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{what}: {(int)response.StatusCode} {text}");
            Assert.Contains("invalid_request_error", text);
        }
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices"));

        static void Replace(HttpRequestMessage request, string name, string value)
        {
            request.Headers.Remove(name);
            request.Headers.TryAddWithoutValidation(name, value);
        }
    }

    [Fact]
    public async Task Concurrent_first_enrolments_of_one_id_keep_exactly_one_key()
    {
        var (gateway, db) = await StartAsync();
        var keys = Enumerable.Range(0, 8).Select(_ => new DeviceSigner()).ToList();
        var device = TestSecrets.DeviceId("race");
        var results = await Task.WhenAll(keys.Select(async k =>
        {
            using var response = await gateway.Client.SendAsync(k.Post("/bootstrap", k.EnrolBody(device)));
            return (Key: k.PublicKey, Status: (int)response.StatusCode);
        })).WaitAsync(TimeSpan.FromSeconds(60));
        var winners = results.Where(r => r.Status == 200).ToList();
        Assert.Single(winners);
        Assert.All(results.Where(r => r.Status != 200), r => Assert.Equal(401, r.Status));
        Assert.Equal(winners[0].Key, await StoredKeyAsync(db, device));
        keys.ForEach(k => k.Dispose());
    }

    [Fact]
    public async Task Without_Postgres_keys_are_enrolled_in_process_one_winner_and_replays_refused()
    {
        var settings = GatewayHost.DefaultSettings(fx.Simulator.BaseUrl, fx.MasterKey, fx.JwtSecret);
        settings["BOOTSTRAP_RATE_LIMIT"] = "1000";
        await using var gateway = await GatewayHost.StartAsync(settings);
        var keys = Enumerable.Range(0, 6).Select(_ => new DeviceSigner()).ToList();
        var device = TestSecrets.DeviceId("mem");
        var results = await Task.WhenAll(keys.Select(async k =>
        {
            using var response = await gateway.Client.SendAsync(k.Post("/bootstrap", k.EnrolBody(device)));
            return (Signer: k, Status: (int)response.StatusCode);
        })).WaitAsync(TimeSpan.FromSeconds(60));
        var winner = Assert.Single(results, r => r.Status == 200).Signer;

        using (var bare = await gateway.Client.SendAsync(Http.Post("/bootstrap", BareBody(device))))
        {
            await Http.AssertErrorAsync(bare, 401, "authentication_error");
        }
        using var signed = winner.Post("/bootstrap", BareBody(device));
        using var replay = await DeviceSigner.CopyAsync(signed);
        using (var ok = await gateway.Client.SendAsync(signed))
        {
            await TokenAsync(ok);
        }
        using (var again = await gateway.Client.SendAsync(replay))
        {
            await Http.AssertErrorAsync(again, 401, "authentication_error");
        }
        keys.ForEach(k => k.Dispose());
    }

    [Fact]
    public async Task Required_mode_refuses_keyless_devices_and_admits_signed_ones()
    {
        var db = await fx.Postgres.CreateDatabaseAsync();
        var optional = await fx.GatewayAsync(db, s => s["BOOTSTRAP_RATE_LIMIT"] = "100000");
        var required = await fx.GatewayAsync(db, s => { s["DEVICE_KEYS"] = "required"; s["BOOTSTRAP_RATE_LIMIT"] = "100000"; });
        var keyless = TestSecrets.DeviceId("keyless");
        var token = await optional.BootstrapAsync(keyless);

        using (var bare = await required.Client.SendAsync(Http.Post("/bootstrap", BareBody(keyless))))
        {
            var (_, message) = await Http.AssertErrorAsync(bare, 401, "authentication_error");
            Assert.Contains("requires device keys", message);
        }
        using (var refresh = await required.Client.SendAsync(Http.Post("/refresh", "", bearer: token)))
        {
            await Http.AssertErrorAsync(refresh, 401, "authentication_error");
        }
        Assert.Equal(0L, await fx.ScalarAsync<long>(db, "SELECT count(*) FROM devices WHERE device_id <> @id", ("id", keyless)));

        using var key = new DeviceSigner();
        var device = TestSecrets.DeviceId("signed");
        var signedToken = await EnrolAsync(required, key, device);
        using var signedRefresh = await required.Client.SendAsync(key.Post("/refresh", "", bearer: signedToken));
        await TokenAsync(signedRefresh);
    }

    [Fact]
    public void DEVICE_KEYS_accepts_only_optional_or_required()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ANTHROPIC_API_KEY"] = "k", ["JWT_SECRET"] = TestSecrets.JwtSecret(), ["DEVICE_KEYS"] = "sometimes",
        }).Build();
        var error = Assert.Throws<GatewayConfigurationException>(object? () => GatewayOptions.Load(config));
        Assert.Contains("DEVICE_KEYS", error.Message);
    }

    [Fact]
    public async Task An_operator_reset_lets_the_device_enrol_a_new_key_and_its_old_tokens_must_refresh()
    {
        var (gateway, db) = await StartAsync();
        using var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", OperatorKey);
        manage.DefaultRequestHeaders.Add("x-operator", "ops@acme");
        using var lost = new DeviceSigner();
        using var replacement = new DeviceSigner();
        var device = TestSecrets.DeviceId("reset");
        var oldToken = await EnrolAsync(gateway, lost, device);

        using (var view = await manage.GetAsync($"/manage/v1/devices/{device}"))
        {
            using var json = JsonDocument.Parse(await view.Content.ReadAsStringAsync());
            Assert.Equal("p256", json.RootElement.GetProperty("key_algorithm").GetString());
            Assert.Equal(16, json.RootElement.GetProperty("key_fingerprint").GetString()!.Length);
        }
        using (var before = await gateway.Client.SendAsync(replacement.Post("/bootstrap", replacement.EnrolBody(device))))
        {
            await Http.AssertErrorAsync(before, 401, "authentication_error");
        }
        using (var reset = await manage.PostAsync($"/manage/v1/devices/{device}/reset-key", null))
        {
            var text = await reset.Content.ReadAsStringAsync();
            Assert.True(reset.StatusCode == HttpStatusCode.OK, text);
            using var json = JsonDocument.Parse(text);
            Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("key_algorithm").ValueKind);
            Assert.Equal(2, json.RootElement.GetProperty("policy_version").GetInt32());
        }
        Assert.Null(await StoredKeyAsync(db, device));
        Assert.Equal("ops@acme", await fx.ScalarAsync<string>(db, "SELECT actor FROM audit_log WHERE action = 'reset_key' AND target = @id", ("id", device)));

        // The token from before the reset must refresh.
        using (var stale = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: oldToken)))
        {
            var (_, message) = await Http.AssertErrorAsync(stale, 401, "authentication_error");
            Assert.Contains("refresh", message);
        }
        await EnrolAsync(gateway, replacement, device);
        Assert.Equal(replacement.PublicKey, await StoredKeyAsync(db, device));
        using (var oldKey = await gateway.Client.SendAsync(lost.Post("/refresh", "", bearer: oldToken)))
        {
            await Http.AssertErrorAsync(oldKey, 401, "authentication_error");
        }

        using (var again = await manage.PostAsync($"/manage/v1/devices/{TestSecrets.DeviceId("nobody")}/reset-key", null))
        {
            await Http.AssertErrorAsync(again, 404, "not_found_error");
        }
        var keyless = TestSecrets.DeviceId("keyless");
        await gateway.BootstrapAsync(keyless);
        using (var none = await manage.PostAsync($"/manage/v1/devices/{keyless}/reset-key", null))
        {
            await Http.AssertErrorAsync(none, 409, "conflict_error");
        }
        using var anonymous = new HttpClient { BaseAddress = gateway.ManagementUrl };
        using var unauthorised = await anonymous.PostAsync($"/manage/v1/devices/{device}/reset-key", null);
        await Http.AssertErrorAsync(unauthorised, 401, "authentication_error");
        Assert.Equal(replacement.PublicKey, await StoredKeyAsync(db, device));
    }
}
