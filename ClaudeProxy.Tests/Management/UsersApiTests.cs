using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using ClaudeProxy.Gateway.Data;
using ClaudeProxy.Gateway.Management;
using ClaudeProxy.Gateway.Tokens;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace ClaudeProxy.Tests.Management;

/// <summary>People in the management API: listing, detail, deactivation and reactivation, devices owned by a person.</summary>
public sealed class UsersApiTests(StackFixture fx) : IClassFixture<StackFixture>
{
    private async Task<(GatewayHost Gateway, HttpClient Manage)> StartAsync() => await StartAsync(await fx.Postgres.CreateDatabaseAsync());

    private async Task<(GatewayHost Gateway, HttpClient Manage)> StartAsync(string database)
    {
        var gateway = await fx.GatewayAsync(database, s => s["ADMIN_API_KEY"] = TestSecrets.OperatorKey);
        var manage = new HttpClient { BaseAddress = gateway.ManagementUrl };
        manage.DefaultRequestHeaders.Authorization = new("Bearer", TestSecrets.OperatorKey);
        manage.DefaultRequestHeaders.Add("x-operator", "ops@acme");
        return (gateway, manage);
    }

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response, HttpStatusCode status = HttpStatusCode.OK)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<GatewayDbContext> DbAsync(GatewayHost gateway) =>
        await gateway.Services.GetRequiredService<IDbContextFactory<GatewayDbContext>>().CreateDbContextAsync();

    internal static string NewUserId() => "usr_" + string.Concat(Guid.NewGuid().ToString("N").Take(16));

    /// <summary>A person as the sign-in flow leaves them: their row and their own sign-in device record.</summary>
    internal static async Task<string> PersonAsync(GatewayHost gateway, string email, string name, string[] groups, string status = "active")
    {
        var id = NewUserId();
        var now = DateTimeOffset.UtcNow;
        await using var db = await DbAsync(gateway);
        db.Users.Add(new UserRecord
        {
            UserId = id, Issuer = "https://idp.example", Subject = Guid.NewGuid().ToString("N"), Email = email, Name = name, Groups = [.. groups],
            Status = status, FirstSeen = now.AddDays(-3), LastSeen = now,
        });
        db.Devices.Add(new DeviceRecord
        {
            DeviceId = UserRecord.DeviceIdOf(id), UserId = id, OwnerUserId = id, OrgId = "default", Status = status == "active" ? "active" : "revoked",
            Models = ["claude-*"], RateLimit = 1000, PolicyVersion = 1, FirstSeen = now.AddDays(-3), LastSeen = now,
        });
        await db.SaveChangesAsync();
        return id;
    }

    private static async Task SpendAsync(GatewayHost gateway, string deviceId, decimal cost, DateTimeOffset day, string model = "claude-sonnet-4-5")
    {
        await using var db = await DbAsync(gateway);
        db.UsageRollups.Add(new UsageRollup("d", new DateTimeOffset(day.UtcDateTime.Date, TimeSpan.Zero), deviceId, model, 1, 0, 10, 10, 0, 0, 0, cost, 0));
        await db.SaveChangesAsync();
    }

    private static string TokenFor(GatewayHost gateway, string userId) =>
        gateway.Services.GetRequiredService<TokenService>()
            .Issue(UserRecord.DeviceIdOf(userId), userId, "default", new DevicePolicy(["claude-*"], 1000, null, null, 1)).Token;

    private static async Task<int> AuditCountAsync(GatewayHost gateway)
    {
        await using var db = await DbAsync(gateway);
        return await db.Audit.CountAsync();
    }

    [Fact]
    public async Task People_are_listed_with_their_devices_and_spend_this_period_filtered_searched_and_paged()
    {
        var (gateway, manage) = await StartAsync();
        var alice = await PersonAsync(gateway, "alice@acme.example", "Alice Archer", ["engineering"]);
        var bob = await PersonAsync(gateway, "bob@acme.example", "Bob Baker", ["engineering", "claudeproxy-admins"], status: "deactivated");
        var carol = await PersonAsync(gateway, "carol@acme.example", "Carol_Cook", []);
        await JsonAsync(await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "alice-laptop", owner_user_id = alice }), HttpStatusCode.Created);
        await JsonAsync(await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "shared-ci" }), HttpStatusCode.Created);

        var periodStart = gateway.Services.GetRequiredService<ManagementContext>().PeriodStart();
        await SpendAsync(gateway, "@" + alice, 1.25m, periodStart);
        await SpendAsync(gateway, "alice-laptop", 2.50m, periodStart, "claude-haiku-4-5");
        await SpendAsync(gateway, "alice-laptop", 100m, periodStart.AddDays(-1));
        await SpendAsync(gateway, "shared-ci", 7m, periodStart);

        var page = await JsonAsync(await manage.GetAsync("/manage/v1/users?sort=email&order=asc"));
        Assert.Equal(3, page.GetProperty("total").GetInt32());
        var rows = page.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal([alice, bob, carol], rows.Select(r => r.GetProperty("user_id").GetString()));
        var first = rows[0];
        Assert.Equal("alice@acme.example", first.GetProperty("email").GetString());
        Assert.Equal("Alice Archer", first.GetProperty("name").GetString());
        Assert.Equal(["engineering"], first.GetProperty("groups").EnumerateArray().Select(g => g.GetString()));
        Assert.Equal("active", first.GetProperty("status").GetString());
        Assert.Equal(3.75m, first.GetProperty("spent_this_period").GetDecimal());
        var devices = first.GetProperty("devices").EnumerateArray().ToList();
        Assert.Equal(["@" + alice, "alice-laptop"], devices.Select(d => d.GetProperty("device_id").GetString()));
        Assert.Equal(2.50m, devices[1].GetProperty("spent_this_period").GetDecimal());
        Assert.Equal(0m, rows[2].GetProperty("spent_this_period").GetDecimal());
        Assert.Equal("revoked", rows[1].GetProperty("devices")[0].GetProperty("status").GetString());

        var bySpend = await JsonAsync(await manage.GetAsync("/manage/v1/users?sort=spend&order=desc&page_size=1"));
        Assert.Equal(alice, bySpend.GetProperty("data")[0].GetProperty("user_id").GetString());

        var deactivated = await JsonAsync(await manage.GetAsync("/manage/v1/users?status=deactivated"));
        Assert.Equal([bob], deactivated.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("user_id").GetString()));
        var byEmail = await JsonAsync(await manage.GetAsync("/manage/v1/users?search=ALICE%40ACME"));
        Assert.Equal([alice], byEmail.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("user_id").GetString()));
        var byName = await JsonAsync(await manage.GetAsync("/manage/v1/users?search=baker"));
        Assert.Equal([bob], byName.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("user_id").GetString()));
        // '_' and '%' are searched for as themselves, not as wildcards.
        var underscore = await JsonAsync(await manage.GetAsync("/manage/v1/users?search=_"));
        Assert.Equal([carol], underscore.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("user_id").GetString()));
        var percent = await JsonAsync(await manage.GetAsync("/manage/v1/users?search=%25"));
        Assert.Equal(0, percent.GetProperty("total").GetInt32());

        var seen = new List<string>();
        for (var p = 1; p <= 2; p++)
        {
            var paged = await JsonAsync(await manage.GetAsync($"/manage/v1/users?sort=email&order=asc&page={p}&page_size=2"));
            Assert.Equal(3, paged.GetProperty("total").GetInt32());
            Assert.Equal(2, paged.GetProperty("page_size").GetInt32());
            seen.AddRange(paged.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("user_id").GetString()!));
        }
        Assert.Equal([alice, bob, carol], seen);

        var one = await JsonAsync(await manage.GetAsync($"/manage/v1/users/{alice}"));
        Assert.Equal(3.75m, one.GetProperty("spent_this_period").GetDecimal());
        Assert.Equal(2, one.GetProperty("devices").GetArrayLength());
        var laptop = await JsonAsync(await manage.GetAsync("/manage/v1/devices/alice-laptop"));
        Assert.Equal(alice, laptop.GetProperty("owner_user_id").GetString());

        using (var unknown = await manage.GetAsync($"/manage/v1/users/{NewUserId()}"))
        {
            await Http.AssertErrorAsync(unknown, 404, "not_found_error");
        }
        using (var badStatus = await manage.GetAsync("/manage/v1/users?status=deleted"))
        {
            await Http.AssertErrorAsync(badStatus, 400, "invalid_request_error");
        }
        using (var longSearch = await manage.GetAsync("/manage/v1/users?search=" + new string('a', 5000)))
        {
            await Http.AssertErrorAsync(longSearch, 400, "invalid_request_error");
        }
    }

    [Fact]
    public async Task Deactivating_a_person_refuses_their_token_within_a_second_revokes_their_refresh_tokens_and_reactivating_restores_it()
    {
        var (gateway, manage) = await StartAsync();
        var person = await PersonAsync(gateway, "dana@acme.example", "Dana", ["engineering"]);
        var other = await PersonAsync(gateway, "erin@acme.example", "Erin", []);
        var earlier = DateTimeOffset.UtcNow.AddDays(-1);
        await using (var db = await DbAsync(gateway))
        {
            foreach (var (user, revoked) in new[] { (person, (DateTimeOffset?)null), (person, null), (person, earlier), (other, null) })
            {
                db.RefreshTokens.Add(new RefreshTokenRecord
                {
                    TokenHash = Convert.ToHexStringLower(Guid.NewGuid().ToByteArray()) + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray()),
                    FamilyId = Guid.NewGuid(), UserId = user, CreatedAt = DateTimeOffset.UtcNow.AddHours(-2), ExpiresAt = DateTimeOffset.UtcNow.AddDays(30),
                    RevokedAt = revoked,
                });
            }
            await db.SaveChangesAsync();
        }
        var token = TokenFor(gateway, person);
        var otherToken = TokenFor(gateway, other);
        using (var before = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        var deactivated = await JsonAsync(await manage.PostAsync($"/manage/v1/users/{person}/deactivate", null));
        Assert.Equal("deactivated", deactivated.GetProperty("status").GetString());
        Assert.Equal("revoked", deactivated.GetProperty("devices")[0].GetProperty("status").GetString());
        var clock = Stopwatch.StartNew();
        while (true)
        {
            using var refused = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token));
            if (refused.StatusCode == HttpStatusCode.Unauthorized)
            {
                await Http.AssertErrorAsync(refused, 401, "authentication_error");
                break;
            }
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"still {(int)refused.StatusCode} after {clock.Elapsed}");
        }
        using (var unaffected = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: otherToken)))
        {
            Assert.Equal(HttpStatusCode.OK, unaffected.StatusCode);
        }
        await using (var db = await DbAsync(gateway))
        {
            var tokens = await db.RefreshTokens.AsNoTracking().ToListAsync();
            Assert.All(tokens.Where(t => t.UserId == person), t => Assert.NotNull(t.RevokedAt));
            Assert.Contains(tokens, t => t.UserId == person && t.RevokedAt!.Value.ToUnixTimeSeconds() == earlier.ToUnixTimeSeconds());
            Assert.All(tokens.Where(t => t.UserId == other), t => Assert.Null(t.RevokedAt));
            var audit = await db.Audit.AsNoTracking().Where(a => a.Target == person).ToListAsync();
            var entry = Assert.Single(audit);
            Assert.Equal("deactivate", entry.Action);
            Assert.Equal("ops@acme", entry.Actor);
            var before = JsonDocument.Parse(entry.Before!).RootElement;
            var after = JsonDocument.Parse(entry.After!).RootElement;
            Assert.Equal(("active", "active"), (before.GetProperty("status").GetString(), before.GetProperty("device_status").GetString()));
            Assert.Equal(("deactivated", "revoked"), (after.GetProperty("status").GetString(), after.GetProperty("device_status").GetString()));
            Assert.Equal(2, after.GetProperty("refresh_tokens_revoked").GetInt32());
        }

        // Again: the same answer, and nothing new to record.
        var again = await JsonAsync(await manage.PostAsync($"/manage/v1/users/{person}/deactivate", null));
        Assert.Equal("deactivated", again.GetProperty("status").GetString());
        Assert.Equal(1, await AuditCountAsync(gateway));

        var reactivated = await JsonAsync(await manage.PostAsync($"/manage/v1/users/{person}/reactivate", null));
        Assert.Equal("active", reactivated.GetProperty("status").GetString());
        Assert.Equal("active", reactivated.GetProperty("devices")[0].GetProperty("status").GetString());
        using (var restored = await gateway.Client.SendAsync(Http.Post("/v1/messages", Http.SmallMessage, bearer: token)))
        {
            Assert.Equal(HttpStatusCode.OK, restored.StatusCode);
        }
        await using (var db = await DbAsync(gateway))
        {
            // Reactivating does not bring revoked sign-ins back: the person signs in again.
            Assert.All(await db.RefreshTokens.Where(t => t.UserId == person).ToListAsync(), t => Assert.NotNull(t.RevokedAt));
            Assert.Equal(["deactivate", "reactivate"], await db.Audit.Where(a => a.Target == person).OrderBy(a => a.Id).Select(a => a.Action).ToListAsync());
        }
    }

    [Fact]
    public async Task Concurrent_deactivations_and_reactivations_leave_the_person_and_their_record_in_step()
    {
        var (gateway, manage) = await StartAsync();
        var person = await PersonAsync(gateway, "frank@acme.example", "Frank", []);
        var calls = Enumerable.Range(0, 16).Select(i => manage.PostAsync($"/manage/v1/users/{person}/{(i % 2 == 0 ? "deactivate" : "reactivate")}", null));
        var answers = await Task.WhenAll(calls).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));

        await using var db = await DbAsync(gateway);
        var user = await db.Users.AsNoTracking().SingleAsync(u => u.UserId == person);
        var device = await db.Devices.AsNoTracking().SingleAsync(d => d.DeviceId == "@" + person);
        Assert.Equal(user.Status == "active" ? "active" : "revoked", device.Status);
        // Each recorded change starts where the one before it ended.
        var audit = await db.Audit.AsNoTracking().Where(a => a.Target == person).OrderBy(a => a.Id).ToListAsync();
        Assert.NotEmpty(audit);
        string Status(string json) => JsonDocument.Parse(json).RootElement.GetProperty("status").GetString()!;
        Assert.Equal("active", Status(audit[0].Before!));
        for (var i = 1; i < audit.Count; i++)
        {
            Assert.Equal(Status(audit[i - 1].After!), Status(audit[i].Before!));
        }
        Assert.Equal(user.Status, Status(audit[^1].After!));
    }

    [Fact]
    public async Task Malformed_ids_are_refused_before_the_database_is_asked()
    {
        var database = await fx.Postgres.CreateDatabaseAsync();
        var (_, manage) = await StartAsync(database);
        var paths = await JsonAsync(await manage.GetAsync("/manage/v1/openapi/management.json"));
        Assert.Contains("/manage/v1/users/{id}/deactivate", paths.GetProperty("paths").EnumerateObject().Select(p => p.Name));
        await fx.ExecuteAsync("postgres", $"DROP DATABASE \"{database}\" WITH (FORCE)");

        using (var wellFormed = await manage.PostAsync($"/manage/v1/users/{NewUserId()}/deactivate", null))
        {
            Assert.True((int)wellFormed.StatusCode >= 500, $"a well-formed id needs the database, which is gone: {(int)wellFormed.StatusCode}");
        }
        foreach (var path in new[] { "/manage/v1/users/usr_NOPE/deactivate", "/manage/v1/users/usr_NOPE/reactivate" })
        {
            using var response = await manage.PostAsync(path, null);
            await Http.AssertErrorAsync(response, 400, "invalid_request_error");
        }
        using var get = await manage.GetAsync("/manage/v1/users/%40usr_aaaaaaaaaaaaaaaa");
        await Http.AssertErrorAsync(get, 400, "invalid_request_error");
    }

    [Fact]
    public async Task Hostile_ids_and_owners_are_refused_and_nothing_is_written()
    {
        var (gateway, manage) = await StartAsync();
        var person = await PersonAsync(gateway, "gina@acme.example", "Gina", []);
        var auditBefore = await AuditCountAsync(gateway);

        foreach (var id in new[] { "usr_ABCDEFGHIJKLMNOP", "usr_123", "usr_" + new string('a', 17), "usr_aaaaaaaaaaaaaaaa%0A", "..%2F..%2Fetc", "%27%3B--", "%40" + person,
                     "usr_aaaaaaaaaaaaaaa%C3%A9", new string('x', 3000) })
        {
            foreach (var path in new[] { $"/manage/v1/users/{id}", $"/manage/v1/users/{id}/deactivate", $"/manage/v1/users/{id}/reactivate" })
            {
                using var response = path.EndsWith("activate", StringComparison.Ordinal) ? await manage.PostAsync(path, null) : await manage.GetAsync(path);
                var (_, message) = await Http.AssertErrorAsync(response, 400, "invalid_request_error");
                Assert.Contains("usr_", message);
            }
        }
        using (var unknown = await manage.PostAsync($"/manage/v1/users/{NewUserId()}/deactivate", null))
        {
            await Http.AssertErrorAsync(unknown, 404, "not_found_error");
        }

        // A device's owner must be a person the gateway knows.
        using (var nobody = await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "orphan-1", owner_user_id = NewUserId() }))
        {
            var (_, message) = await Http.AssertErrorAsync(nobody, 400, "invalid_request_error");
            Assert.Contains("names no person", message);
        }
        using (var malformed = await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "orphan-2", owner_user_id = "../etc/passwd" }))
        {
            await Http.AssertErrorAsync(malformed, 400, "invalid_request_error");
        }
        using (var wrongType = await manage.PostAsync("/manage/v1/devices",
                   new StringContent("""{"device_id":"orphan-3","owner_user_id":42}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, wrongType.StatusCode);
        }
        await JsonAsync(await manage.PostAsJsonAsync("/manage/v1/devices", new { device_id = "kiosk-1" }), HttpStatusCode.Created);
        var afterRegister = await AuditCountAsync(gateway);
        foreach (var body in new[] { "", "null", "[]", "\"usr_aaaaaaaaaaaaaaaa\"", """{"owner_user_id":42}""", """{"owner_user_id":"usr_AAAA"}""",
                     $$"""{"owner_user_id":"{{NewUserId()}}"}""", """{"owner_user_id":""" })
        {
            using var response = await manage.PutAsync("/manage/v1/devices/kiosk-1/owner", new StringContent(body, Encoding.UTF8, "application/json"));
            await Http.AssertErrorAsync(response, 400, "invalid_request_error");
        }
        using (var ownRecord = await manage.PutAsJsonAsync($"/manage/v1/devices/@{person}/owner", new { owner_user_id = (string?)null }))
        {
            await Http.AssertErrorAsync(ownRecord, 409, "conflict_error");
        }
        using (var noDevice = await manage.PutAsJsonAsync("/manage/v1/devices/no-such-device/owner", new { owner_user_id = person }))
        {
            await Http.AssertErrorAsync(noDevice, 404, "not_found_error");
        }

        await using (var db = await DbAsync(gateway))
        {
            Assert.Equal(["kiosk-1"], (await db.Devices.Select(d => d.DeviceId).ToListAsync()).Where(d => !d.StartsWith('@')));
            Assert.Null((await db.Devices.SingleAsync(d => d.DeviceId == "kiosk-1")).OwnerUserId);
            Assert.Equal("active", (await db.Users.SingleAsync(u => u.UserId == person)).Status);
        }
        Assert.Equal(afterRegister, await AuditCountAsync(gateway));
        Assert.Equal(auditBefore + 1, afterRegister);

        // A good owner is accepted, recorded and shown; null gives the device back to nobody.
        var owned = await JsonAsync(await manage.PutAsJsonAsync("/manage/v1/devices/kiosk-1/owner", new { owner_user_id = person }));
        Assert.Equal(person, owned.GetProperty("owner_user_id").GetString());
        var user = await JsonAsync(await manage.GetAsync($"/manage/v1/users/{person}"));
        Assert.Contains("kiosk-1", user.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("device_id").GetString()));
        var released = await JsonAsync(await manage.PutAsJsonAsync("/manage/v1/devices/kiosk-1/owner", new { owner_user_id = (string?)null }));
        Assert.Equal(JsonValueKind.Null, released.GetProperty("owner_user_id").ValueKind);
        Assert.Equal(afterRegister + 2, await AuditCountAsync(gateway));
    }
}
