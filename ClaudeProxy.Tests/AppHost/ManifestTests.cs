using System.Text.Json;
using System.Text.Json.Nodes;
using ClaudeProxy.Admin;
using ClaudeProxy.AppHost.Kubernetes;
using ClaudeProxy.Gateway.Configuration;
using ClaudeProxy.Settings;
using ClaudeProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using k8s;
using k8s.Models;

namespace ClaudeProxy.Tests.AppHost;

/// <summary>
/// The Kubernetes deployment as a platform engineer reads it: the published base up to date, both overlays and every
/// component building with kustomize, every object valid for its schema, and the safety defaults in place.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ManifestTests : IAsyncLifetime
{
    private static readonly string Base = Path.Combine(Kustomize.K8s, "base");
    private string _copy = "";
    private readonly string _anthropicKey = "sk-ant-" + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));

    public async Task InitializeAsync() => _copy = await Kustomize.CopyWithDevSecretsAsync(_anthropicKey);

    public Task DisposeAsync()
    {
        Directory.Delete(_copy, recursive: true);
        return Task.CompletedTask;
    }

    private Task<Kustomize.Built> OverlayAsync(string name) => Kustomize.BuildAsync(Path.Combine(_copy, "overlays", name));

    /// <summary>An overlay with components added, as an operator's own kustomization would.</summary>
    private async Task<Kustomize.Built> ComposeAsync(string overlay, params string[] components)
    {
        var dir = Path.Combine(_copy, "compose-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        await File.WriteAllTextAsync(Path.Combine(dir, "kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../overlays/" + overlay + "\ncomponents:\n"
            + string.Concat(components.Select(c => "  - ../components/" + c + "\n")));
        return await Kustomize.BuildAsync(dir);
    }

    public static TheoryData<string> Overlays => new() { "dev", "prod" };

    [Fact]
    public async Task The_committed_base_is_what_the_apphost_publishes_now()
    {
        var k8s = Directory.CreateTempSubdirectory("claudeproxy-publish-").FullName;
        try
        {
            // What `aspire publish -o deploy/k8s/base` runs: Aspire's manifest publisher, then the AppHost's Kubernetes step.
            var (code, stdout, stderr) = await Kustomize.RunAsync("dotnet", null, null, Repo.AppHostDll, "--operation", "publish", "--step", "publish", "--output-path", k8s);
            Assert.True(code == 0, stderr + stdout);
            var published = Directory.GetFiles(k8s).Select(Path.GetFileName).Order().ToList();
            var committed = Directory.GetFiles(Base).Select(Path.GetFileName).Order().ToList();
            Assert.Equal(committed, published);
            foreach (var name in published)
            {
                var fresh = await File.ReadAllTextAsync(Path.Combine(k8s, name!));
                var mine = await File.ReadAllTextAsync(Path.Combine(Base, name!));
                if (name == "aspire-manifest.json")
                {
                    // Project paths are relative to the output folder; compare everything else.
                    fresh = RelativePaths(fresh);
                    mine = RelativePaths(mine);
                }
                Assert.True(fresh == mine, $"deploy/k8s/base/{name} is out of date: run aspire publish -o deploy/k8s/base (or ./run.sh publish)");
                AssertNothingOfTheDevelopmentProvider(name!, fresh);
            }
        }
        finally
        {
            Directory.Delete(k8s, recursive: true);
        }
    }

    [Fact]
    public void The_committed_base_has_nothing_of_the_development_identity_provider()
    {
        foreach (var file in Directory.GetFiles(Base))
        {
            AssertNothingOfTheDevelopmentProvider(Path.GetFileName(file), File.ReadAllText(file));
        }
    }

    /// <summary>The development provider runs under `aspire run` only: no workload, setting or secret of it is ever deployed.</summary>
    private static void AssertNothingOfTheDevelopmentProvider(string file, string text)
    {
        foreach (var trace in new[] { "devidentity", "DevIdentity__", global::ClaudeProxy.DevIdentity.DevIdentityOptions.DefaultClientSecret, global::ClaudeProxy.DevIdentity.DevIdentityOptions.DefaultPassword })
        {
            Assert.False(text.Contains(trace, StringComparison.OrdinalIgnoreCase), $"deploy/k8s/base/{file} mentions {trace}");
        }
    }

    private static string RelativePaths(string json) => System.Text.RegularExpressions.Regex.Replace(json, "\"path\": \"[^\"]*/(ClaudeProxy\\.[A-Za-z]+\\.csproj)\"", "\"path\": \"$1\"");

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task Every_object_of_the_overlay_is_valid_for_its_schema(string overlay) => AssertValid(await OverlayAsync(overlay));

    [Fact]
    public async Task The_components_build_on_the_prod_overlay_and_stay_valid()
    {
        AssertValid(await ComposeAsync("prod", "managed-databases"));
        AssertValid(await ComposeAsync("prod", "gateway-api"));
        AssertValid(await ComposeAsync("dev", "managed-databases", "gateway-api"));
    }

    /// <summary>
    /// Built-in kinds: read as the Kubernetes client's typed models and written back, nothing may be lost (a field the
    /// schema does not have, or one at the wrong place, is dropped by the model); custom resources: the fields their
    /// controllers require.
    /// </summary>
    private static void AssertValid(Kustomize.Built built)
    {
        var typed = 0;
        foreach (var tree in built.Trees)
        {
            var kind = $"{tree["apiVersion"]}/{tree["kind"]}";
            var name = (string?)tree["metadata"]?["name"];
            Assert.False(string.IsNullOrEmpty(name), $"{kind} has no name");
            if (Kustomize.CustomKinds.Contains(kind))
            {
                AssertCustomResource(kind, name!, tree);
                continue;
            }
            var model = built.Typed[typed++];
            var back = JsonNode.Parse(KubernetesJson.Serialize(model))!;
            AssertKnown(tree, back, $"{kind} {name}");
        }
        Assert.Equal(built.Typed.Count, typed);
    }

    private static void AssertKnown(JsonNode? written, JsonNode? read, string path)
    {
        switch (written)
        {
            case JsonObject map:
                Assert.True(read is JsonObject, $"{path}: not an object in the schema");
                foreach (var (key, value) in map)
                {
                    Assert.True(((JsonObject)read!).ContainsKey(key) || value is null, $"{path}.{key} is not a field of the schema");
                    AssertKnown(value, ((JsonObject)read!)[key], $"{path}.{key}");
                }
                break;
            case JsonArray list:
                Assert.True(read is JsonArray other && other.Count == list.Count, $"{path}: not a list of {list.Count} in the schema");
                for (var i = 0; i < list.Count; i++)
                {
                    AssertKnown(list[i], ((JsonArray)read!)[i], $"{path}[{i}]");
                }
                break;
        }
    }

    private static void AssertCustomResource(string kind, string name, JsonObject tree)
    {
        var spec = tree["spec"]!.AsObject();
        switch (kind)
        {
            case "external-secrets.io/v1/ExternalSecret":
                Assert.Equal(["data", "refreshInterval", "secretStoreRef", "target"], spec.Select(p => p.Key).Order());
                Assert.NotNull(spec["secretStoreRef"]!["name"]);
                Assert.Equal(name, (string?)spec["target"]!["name"]);
                Assert.All(spec["data"]!.AsArray(), d =>
                {
                    Assert.False(string.IsNullOrEmpty((string?)d!["secretKey"]));
                    Assert.False(string.IsNullOrEmpty((string?)d["remoteRef"]!["key"]));
                });
                break;
            case "cert-manager.io/v1/Issuer":
                Assert.True(spec.ContainsKey("selfSigned") || spec.ContainsKey("acme") || spec.ContainsKey("ca"), $"{name}: no issuer type");
                break;
            case "gateway.networking.k8s.io/v1/HTTPRoute":
                Assert.NotEmpty(spec["parentRefs"]!.AsArray());
                Assert.All(spec["rules"]!.AsArray(), rule => Assert.All(rule!["backendRefs"]!.AsArray(), b =>
                {
                    Assert.False(string.IsNullOrEmpty((string?)b!["name"]));
                    Assert.True(int.TryParse((string?)b["port"], out _));
                }));
                break;
            default:
                Assert.Fail($"{kind} has no check");
                break;
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task Bootstrap_is_never_served_on_the_public_host_and_the_devices_are_safe_by_default(string overlay)
    {
        var built = await OverlayAsync(overlay);
        var config = built.Of<V1ConfigMap>().Single().Data;
        Assert.Equal("approval", config["BOOTSTRAP_MODE"]);
        Assert.Equal("required", config["DEVICE_KEYS"]);
        Assert.True(decimal.Parse(config["DEFAULT_SPEND_CAP"], System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.False(string.IsNullOrWhiteSpace(config["BOOTSTRAP_ALLOWED_NETWORKS"]));

        var ingresses = built.Of<V1Ingress>().ToList();
        var publicIngress = ingresses.Single(i => i.Metadata.Name == "gateway");
        var publicHost = publicIngress.Spec.Rules.Single().Host;
        foreach (var ingress in ingresses)
        {
            // TLS for every host, and http redirected to it.
            Assert.All(ingress.Spec.Rules, r => Assert.Contains(ingress.Spec.Tls, t => t.Hosts.Contains(r.Host)));
            Assert.Equal("true", ingress.Metadata.Annotations["nginx.ingress.kubernetes.io/ssl-redirect"]);
            var servesBootstrap = ingress.Spec.Rules.SelectMany(r => r.Http.Paths).Any(p => Matches(p, "/bootstrap"));
            if (servesBootstrap)
            {
                Assert.DoesNotContain(ingress.Spec.Rules, r => r.Host == publicHost);
                Assert.True(ingress.Metadata.Annotations.ContainsKey("nginx.ingress.kubernetes.io/whitelist-source-range"), $"{ingress.Metadata.Name} serves /bootstrap to anyone");
            }
            // The management API (on its own port, which no Service routed here has) and the operator's routes are never routed from outside.
            Assert.DoesNotContain(ingress.Spec.Rules.SelectMany(r => r.Http.Paths), p => p.Backend.Service.Name == "gateway-management");
            Assert.DoesNotContain(ingress.Spec.Rules.SelectMany(r => r.Http.Paths).Where(p => p.Backend.Service.Name == "gateway"),
                p => Matches(p, "/manage/v1/devices") || Matches(p, "/metrics") || Matches(p, "/admin/circuit-breaker/reset"));
        }
        Assert.Equal("nginx", publicIngress.Spec.IngressClassName);
        Assert.Contains(publicIngress.Spec.Rules.Single().Http.Paths, p => Matches(p, "/v1/messages"));
        Assert.Contains(publicIngress.Spec.Rules.Single().Http.Paths, p => Matches(p, "/refresh"));
        Assert.Contains(ingresses, i => i.Spec.Rules.SelectMany(r => r.Http.Paths).Any(p => Matches(p, "/bootstrap")));
        if (overlay == "prod")
        {
            Assert.All(ingresses.Where(i => i.Metadata.Name != "gateway"), i => Assert.Equal("nginx-internal", i.Spec.IngressClassName));
            Assert.Contains("cert-manager.io/cluster-issuer", publicIngress.Metadata.Annotations.Keys);
        }

        // The gateway answers with the public https address, and believes the ingress's forwarded headers.
        Assert.Equal($"https://{publicHost}", config["PROXY_BASE_URL"]);
        Assert.False(string.IsNullOrWhiteSpace(config["TRUSTED_PROXIES"]));
        Assert.True(int.Parse(publicIngress.Metadata.Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > int.Parse(config["UPSTREAM_TIMEOUT_SECONDS"]));
        Assert.Equal("off", publicIngress.Metadata.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"]);
    }

    private static bool Matches(V1HTTPIngressPath path, string request) => path.PathType switch
    {
        "Exact" => path.Path == request,
        _ => request == path.Path || request.StartsWith(path.Path.TrimEnd('/') + "/", StringComparison.Ordinal) || path.Path == "/",
    };

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task The_configuration_each_workload_gets_is_accepted_by_it(string overlay)
    {
        // The dev overlay's generated secrets stand in for the store's in prod: the settings must start the apps.
        var built = await OverlayAsync(overlay);
        var dev = overlay == "dev" ? built : await OverlayAsync("dev");
        var secrets = dev.Of<V1Secret>().SelectMany(s => s.Data).ToDictionary(d => d.Key, d => System.Text.Encoding.UTF8.GetString(d.Value));
        var config = built.Of<V1ConfigMap>().Single().Data;

        var gateway = Container(built, "gateway", "gateway");
        var gatewaySettings = Environment(gateway, config, secrets);
        var options = GatewayOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(gatewaySettings!).Build());
        Assert.Equal(new Uri(config["PROXY_BASE_URL"]).GetLeftPart(UriPartial.Authority), options.ProxyBaseUrl);
        Assert.NotEmpty(options.TrustedProxies);
        Assert.Equal(ClaudeProxy.Gateway.Tokens.DeviceKeyMode.Required, options.DeviceKeys);

        var admin = Container(built, "admin", "admin");
        var adminOptions = AdminOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(Environment(admin, config, secrets)!).Build());
        Assert.Equal("http://gateway-management:3002", Environment(admin, config, secrets)["services__gateway__management__0"]);
        Assert.NotNull(adminOptions);
    }

    private static V1Container Container(Kustomize.Built built, string workload, string container) =>
        PodSpecs(built).Single(p => p.Name == workload).Spec.Containers.Single(c => c.Name == container);

    private static Dictionary<string, string> Environment(V1Container container, IDictionary<string, string> config, Dictionary<string, string> secrets)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var from in container.EnvFrom ?? [])
        {
            Assert.Null(from.SecretRef);
            foreach (var (key, value) in config)
            {
                env[key] = value;
            }
        }
        foreach (var e in container.Env ?? [])
        {
            if (e.ValueFrom?.SecretKeyRef is { Optional: true } optional && !secrets.ContainsKey(optional.Key))
            {
                continue;
            }
            env[e.Name] = e.Value ?? (e.ValueFrom!.SecretKeyRef is { } s ? secrets[s.Key] : config[e.ValueFrom.ConfigMapKeyRef.Key]);
        }
        return env;
    }

    private static IEnumerable<(string Name, V1PodTemplateSpec Template, V1PodSpec Spec)> PodSpecs(Kustomize.Built built) =>
        built.Of<V1Deployment>().Select(d => (d.Metadata.Name, d.Spec.Template, d.Spec.Template.Spec))
            .Concat(built.Of<V1StatefulSet>().Select(s => (s.Metadata.Name, s.Spec.Template, s.Spec.Template.Spec)))
            .Concat(built.Of<V1CronJob>().Select(c => (c.Metadata.Name, c.Spec.JobTemplate.Spec.Template, c.Spec.JobTemplate.Spec.Template.Spec)))
            .Concat(built.Of<V1Job>().Select(j => (j.Metadata.Name, j.Spec.Template, j.Spec.Template.Spec)));

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task Every_workload_reads_only_its_own_secret_keys_each_by_reference(string overlay)
    {
        var built = await OverlayAsync(overlay);
        var expected = new Dictionary<string, string[]>
        {
            ["gateway/migrate"] = ["ConnectionStrings__claudeproxydb"],
            ["gateway/gateway"] = ["ADMIN_API_KEY", "ANTHROPIC_API_KEY", "ConnectionStrings__claudeproxydb", "ConnectionStrings__redis", "JWT_SECRET", "OIDC_CLIENT_SECRET"],
            ["admin/admin"] = ["ADMIN_API_KEY", "ADMIN_PASSWORD_HASH", "OIDC_CLIENT_SECRET"],
            ["redis/redis"] = ["REDIS_PASSWORD"],
            ["postgres/postgres"] = ["POSTGRES_PASSWORD"],
            ["postgres-backup/backup"] = ["POSTGRES_PASSWORD"],
        };
        // What provides each Secret: the generator (dev) or the secret store (prod); every reference must resolve.
        var provided = built.Of<V1Secret>().ToDictionary(s => s.Metadata.Name, s => s.Data.Keys.ToHashSet());
        foreach (var external in built.Trees.Where(t => (string?)t["kind"] == "ExternalSecret"))
        {
            provided[(string)external["spec"]!["target"]!["name"]!] = external["spec"]!["data"]!.AsArray().Select(d => (string)d!["secretKey"]!).ToHashSet();
        }
        var seen = new Dictionary<string, string[]>();
        foreach (var (name, _, spec) in PodSpecs(built))
        {
            foreach (var container in (spec.InitContainers ?? []).Concat(spec.Containers))
            {
                Assert.DoesNotContain(container.EnvFrom ?? [], f => f.SecretRef is not null);
                var refs = (container.Env ?? []).Where(e => e.ValueFrom?.SecretKeyRef is not null).Select(e => e.ValueFrom.SecretKeyRef).ToList();
                foreach (var r in refs)
                {
                    // An optional key (the identity provider's client secret) is there only when the company signs people in.
                    Assert.True(r.Optional == true || provided.TryGetValue(r.Name, out var keys) && keys.Contains(r.Key), $"{name}/{container.Name}: {r.Name}/{r.Key} is provided by nothing");
                }
                seen[$"{name}/{container.Name}"] = [.. refs.Select(r => r.Key).Distinct().Order(StringComparer.Ordinal)];
            }
        }
        Assert.Equal(expected.OrderBy(e => e.Key).Select(e => $"{e.Key}: {string.Join(",", e.Value)}"), seen.OrderBy(e => e.Key).Select(e => $"{e.Key}: {string.Join(",", e.Value)}"));
        // No Secret with values in the prod overlay: they come from the company's store.
        if (overlay == "prod")
        {
            Assert.Empty(built.Of<V1Secret>());
        }
    }

    [Fact]
    public async Task The_dev_overlays_generated_secrets_are_strong_private_and_kept()
    {
        var built = await OverlayAsync("dev");
        var secrets = built.Of<V1Secret>().SelectMany(s => s.Data).ToDictionary(d => d.Key, d => System.Text.Encoding.UTF8.GetString(d.Value));
        Assert.Equal(_anthropicKey, secrets["ANTHROPIC_API_KEY"]);
        Assert.Null(SecretPolicy.Check("JWT_SECRET", secrets["JWT_SECRET"]));
        Assert.Null(SecretPolicy.Check("ADMIN_API_KEY", secrets["ADMIN_API_KEY"]));
        Assert.All(secrets.Values, v => Assert.DoesNotContain("REPLACE", v, StringComparison.OrdinalIgnoreCase));
        Assert.Contains($"password={secrets["REDIS_PASSWORD"]}", secrets["ConnectionStrings__redis"]);
        Assert.Contains($"Password={secrets["POSTGRES_PASSWORD"]};", secrets["ConnectionStrings__claudeproxydb"]);
        // The admin password printed once is the one the hash verifies.
        var password = System.Text.RegularExpressions.Regex.Match(Kustomize.LastMakeSecretsOutput, "password ([0-9a-f]+)").Groups[1].Value;
        Assert.True(ClaudeProxy.Admin.Auth.AdminPassword.FromHash(secrets["ADMIN_PASSWORD_HASH"]).Verify(password));
        Assert.False(ClaudeProxy.Admin.Auth.AdminPassword.FromHash(secrets["ADMIN_PASSWORD_HASH"]).Verify(password + "x"));
        foreach (var file in new[] { "secrets.env", "databases.env" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_copy, "overlays", "dev", file)));
        }
        // Run again: nothing is replaced (the cluster's data was made with these passwords).
        var before = await File.ReadAllTextAsync(Path.Combine(_copy, "overlays", "dev", "secrets.env"));
        var (code, _, _) = await Kustomize.RunAsync(Path.Combine(_copy, "overlays", "dev", "make-secrets.sh"), null, new Dictionary<string, string> { ["ANTHROPIC_API_KEY"] = "sk-ant-other" });
        Assert.Equal(0, code);
        Assert.Equal(before, await File.ReadAllTextAsync(Path.Combine(_copy, "overlays", "dev", "secrets.env")));
        // And the repository ignores them.
        Assert.Contains("secrets.env", await File.ReadAllTextAsync(Path.Combine(Kustomize.K8s, "overlays", "dev", ".gitignore")));
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task Streams_outlive_a_rollout_and_the_schema_comes_before_the_gateway(string overlay)
    {
        var built = await OverlayAsync(overlay);
        var config = built.Of<V1ConfigMap>().Single().Data;
        var gateway = built.Of<V1StatefulSet>().Single(s => s.Metadata.Name == "gateway");
        var pod = gateway.Spec.Template.Spec;
        var container = pod.Containers.Single();
        var shutdown = int.Parse(container.Env.Single(e => e.Name == "SHUTDOWN_TIMEOUT_SECONDS").Value);
        var preStop = (int)container.Lifecycle.PreStop.Sleep.Seconds;
        // A stream may last the upstream timeout; the pod waits for it, then stores the usage queue, before the kubelet kills it.
        Assert.True(shutdown >= int.Parse(config["UPSTREAM_TIMEOUT_SECONDS"]), $"SHUTDOWN_TIMEOUT_SECONDS {shutdown} is shorter than a stream");
        Assert.True(pod.TerminationGracePeriodSeconds >= preStop + shutdown + 20, $"grace {pod.TerminationGracePeriodSeconds} leaves no time to store usage");
        Assert.True(preStop >= 5);

        // Migrations: an init container of the same image, no Job (a Job cannot be changed in place), readiness on /readyz.
        Assert.Empty(built.Of<V1Job>());
        var migrate = Assert.Single(pod.InitContainers);
        Assert.Equal(["migrate"], migrate.Args);
        Assert.Equal(container.Image, migrate.Image);
        Assert.Equal("false", config["MIGRATE_ON_START"]);
        Assert.Equal("/readyz", container.ReadinessProbe.HttpGet.Path);
        Assert.Equal("/healthz", container.LivenessProbe.HttpGet.Path);

        // The spool: a per-pod persistent volume that outlives the pod, never an emptyDir; every emptyDir is bounded.
        var spoolMount = container.VolumeMounts.Single(m => m.MountPath == config["USAGE_SPOOL_DIR"]);
        Assert.DoesNotContain(pod.Volumes ?? [], v => v.Name == spoolMount.Name);
        var claim = gateway.Spec.VolumeClaimTemplates.Single(t => t.Metadata.Name == spoolMount.Name);
        Assert.NotNull(claim.Spec.Resources.Requests["storage"]);
        Assert.Equal("Retain", gateway.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled);
        Assert.Equal("Retain", gateway.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted);
        foreach (var (name, _, spec) in PodSpecs(built))
        {
            Assert.All((spec.Volumes ?? []).Where(v => v.EmptyDir is not null), v => Assert.True(v.EmptyDir.SizeLimit is not null, $"{name}: emptyDir {v.Name} has no size limit"));
        }

        // Scaling that suits long streams: the HPA owns the count, scales down slowly; one pod at a time goes; spread out.
        Assert.Null(gateway.Spec.Replicas);
        var hpa = built.Of<V2HorizontalPodAutoscaler>().Single();
        Assert.Equal(("StatefulSet", "gateway"), (hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name));
        Assert.True(hpa.Spec.MinReplicas >= (overlay == "prod" ? 3 : 1));
        Assert.True(hpa.Spec.Behavior.ScaleDown.StabilizationWindowSeconds >= 300);
        Assert.All(hpa.Spec.Behavior.ScaleDown.Policies, p => Assert.True(p.Type == "Pods" && p.Value == 1));
        Assert.Contains(hpa.Spec.Metrics, m => m.Type == "Resource" && m.Resource.Name == "cpu");
        if (overlay == "prod")
        {
            Assert.Contains(hpa.Spec.Metrics, m => m.Type == "Pods" && m.Pods.Metric.Name == "claudeproxy_requests_in_flight");
        }
        var pdb = built.Of<V1PodDisruptionBudget>().Single(p => p.Metadata.Name == "gateway");
        Assert.Equal("1", pdb.Spec.MaxUnavailable.Value);
        Assert.Null(pdb.Spec.MinAvailable);
        Assert.Equal(["kubernetes.io/hostname", "topology.kubernetes.io/zone"], pod.TopologySpreadConstraints.Select(t => t.TopologyKey).Order());
        Assert.False(container.Resources.Limits?.ContainsKey("cpu") ?? false, "a CPU limit throttles the latency path");
        Assert.NotNull(container.Resources.Requests["cpu"]);
        // Prometheus scrapes the management port's /metrics.
        Assert.Equal(container.Ports.Single(p => p.Name == "management").ContainerPort.ToString(), gateway.Spec.Template.Metadata.Annotations["prometheus.io/port"]);
        Assert.Equal("/metrics", gateway.Spec.Template.Metadata.Annotations["prometheus.io/path"]);
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task Redis_postgres_and_the_admin_app_keep_their_data_and_their_secrets(string overlay)
    {
        var built = await OverlayAsync(overlay);
        var redis = built.Of<V1StatefulSet>().Single(s => s.Metadata.Name == "redis").Spec.Template.Spec.Containers.Single();
        Assert.Contains("--requirepass", redis.Args);
        Assert.Equal("noeviction", redis.Args[redis.Args.IndexOf("--maxmemory-policy") + 1]);
        Assert.Contains("--maxmemory", redis.Args);
        Assert.Equal("yes", redis.Args[redis.Args.IndexOf("--appendonly") + 1]);
        var postgres = built.Of<V1StatefulSet>().Single(s => s.Metadata.Name == "postgres").Spec.Template.Spec.Containers.Single();
        foreach (var c in new[] { redis, postgres })
        {
            Assert.NotNull(c.ReadinessProbe);
            Assert.NotNull(c.LivenessProbe);
            Assert.NotNull(c.StartupProbe);
        }
        Assert.Contains(built.Of<V1PodDisruptionBudget>(), p => p.Metadata.Name == "redis");
        Assert.Contains(built.Of<V1PodDisruptionBudget>(), p => p.Metadata.Name == "postgres");
        var backup = built.Of<V1CronJob>().Single(c => c.Metadata.Name == "postgres-backup");
        Assert.Contains("pg_dump", string.Join(' ', backup.Spec.JobTemplate.Spec.Template.Spec.Containers.Single().Args));
        Assert.Equal("Forbid", backup.Spec.ConcurrencyPolicy);

        var admin = built.Of<V1Deployment>().Single(d => d.Metadata.Name == "admin");
        var container = admin.Spec.Template.Spec.Containers.Single();
        var keys = container.Env.Single(e => e.Name == "DATA_PROTECTION_KEYS_DIR").Value;
        var mount = container.VolumeMounts.Single(m => keys.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
        var volume = admin.Spec.Template.Spec.Volumes.Single(v => v.Name == mount.Name);
        Assert.Contains(built.Of<V1PersistentVolumeClaim>(), c => c.Metadata.Name == volume.PersistentVolumeClaim.ClaimName);
        Assert.Equal("Recreate", admin.Spec.Strategy.Type);
        Assert.Equal("true", container.Env.Single(e => e.Name == "ADMIN_SECURE_COOKIES").Value);
        Assert.Contains(container.Env, e => e.Name == "TRUSTED_PROXIES");

        // Every image names a version or digest.
        foreach (var (name, _, spec) in PodSpecs(built))
        {
            foreach (var c in (spec.InitContainers ?? []).Concat(spec.Containers))
            {
                Assert.Matches(@"^[^:@\s]+(:[0-9][\w.\-]*|@sha256:[0-9a-f]{64})$", c.Image.Replace("localhost:5001/", "", StringComparison.Ordinal));
                Assert.DoesNotContain(":latest", c.Image);
            }
        }
        // And every pod runs as a non-root user on a read-only file system, without the API server's token.
        foreach (var (name, _, spec) in PodSpecs(built))
        {
            Assert.True(spec.SecurityContext.RunAsNonRoot, name);
            Assert.False(spec.AutomountServiceAccountToken, name);
            Assert.All((spec.InitContainers ?? []).Concat(spec.Containers), c => Assert.True(c.SecurityContext.ReadOnlyRootFilesystem, $"{name}/{c.Name}"));
        }
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task The_network_denies_by_default_and_each_workload_reaches_only_what_it_needs(string overlay)
    {
        var built = await OverlayAsync(overlay);
        var policies = built.Of<V1NetworkPolicy>().ToDictionary(p => p.Metadata.Name);
        var deny = policies["default-deny"];
        Assert.Empty(deny.Spec.PodSelector.MatchLabels ?? new Dictionary<string, string>());
        Assert.Equal(["Egress", "Ingress"], deny.Spec.PolicyTypes.Order());
        Assert.Null(deny.Spec.Ingress);
        Assert.Null(deny.Spec.Egress);
        Assert.Contains(policies["allow-dns"].Spec.Egress.Single().Ports, p => p.Port.Value == "53" && p.Protocol == "UDP");

        var gateway = policies["gateway"];
        var proxyRule = gateway.Spec.Ingress.Single(r => r.Ports.Any(p => p.Port.Value == "3001"));
        Assert.All(proxyRule.FromProperty, f => Assert.NotNull(f.NamespaceSelector));
        Assert.All(proxyRule.FromProperty, f => Assert.Null(f.IpBlock));
        var managementRule = gateway.Spec.Ingress.Single(r => r.Ports.Any(p => p.Port.Value == "3002"));
        Assert.Contains(managementRule.FromProperty, f => f.PodSelector?.MatchLabels["app.kubernetes.io/component"] == "admin");
        Assert.Contains(gateway.Spec.Egress, e => e.To.Any(t => t.PodSelector?.MatchLabels["app.kubernetes.io/component"] == "redis"));
        Assert.Contains(gateway.Spec.Egress, e => e.To.Any(t => t.PodSelector?.MatchLabels["app.kubernetes.io/component"] == "postgres"));
        var https = gateway.Spec.Egress.Single(e => e.To.Any(t => t.IpBlock is not null));
        Assert.Equal(["443"], https.Ports.Select(p => p.Port.Value));
        Assert.Contains("10.0.0.0/8", https.To.First(t => t.IpBlock.Cidr == "0.0.0.0/0").IpBlock.Except);

        var admin = policies["admin"];
        Assert.Equal(2, admin.Spec.Egress.Count);
        var adminOut = admin.Spec.Egress.Single(e => e.To.Any(t => t.PodSelector is not null));
        Assert.Equal("gateway", adminOut.To.Single().PodSelector.MatchLabels["app.kubernetes.io/component"]);
        Assert.Equal(["3002"], adminOut.Ports.Select(p => p.Port.Value));
        // The identity provider operators sign in with: https to public addresses only, like the gateway's upstream.
        var provider = admin.Spec.Egress.Single(e => e.To.Any(t => t.IpBlock is not null));
        Assert.Equal(["443"], provider.Ports.Select(p => p.Port.Value));
        Assert.Contains("10.0.0.0/8", provider.To.First(t => t.IpBlock.Cidr == "0.0.0.0/0").IpBlock.Except);
        foreach (var name in new[] { "redis", "postgres" })
        {
            Assert.Null(policies[name].Spec.Egress);
            Assert.All(policies[name].Spec.Ingress.SelectMany(r => r.FromProperty), f => Assert.NotNull(f.PodSelector));
        }
        // Every workload is selected by a policy of its own.
        foreach (var (name, template, _) in PodSpecs(built))
        {
            Assert.Contains(policies.Values, p => p.Spec.PodSelector.MatchLabels?.Count > 0 && p.Spec.PodSelector.MatchLabels.All(l => template.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value));
        }
    }

    [Fact]
    public async Task Managed_databases_replace_the_in_cluster_ones_and_the_gateway_may_reach_them()
    {
        var built = await ComposeAsync("prod", "managed-databases");
        Assert.DoesNotContain(built.Of<V1StatefulSet>(), s => s.Metadata.Name is "redis" or "postgres");
        Assert.Empty(built.Of<V1CronJob>());
        Assert.DoesNotContain(built.Trees, t => (string?)t["metadata"]!["name"] == "claudeproxy-databases");
        Assert.DoesNotContain(built.Of<V1Service>(), s => s.Metadata.Name is "redis" or "postgres");
        var egress = built.Of<V1NetworkPolicy>().Single(p => p.Metadata.Name == "gateway").Spec.Egress;
        Assert.Contains(egress, e => e.Ports.Any(p => p.Port.Value == "6380") && e.Ports.Any(p => p.Port.Value == "5432"));
        // The gateway still gets its connection strings, now from the store.
        Assert.Contains(built.Trees, t => (string?)t["kind"] == "ExternalSecret" && t["spec"]!["data"]!.AsArray().Any(d => (string?)d!["secretKey"] == "ConnectionStrings__redis"));
        Assert.Contains(built.Of<V1StatefulSet>(), s => s.Metadata.Name == "gateway");
    }

    [Fact]
    public async Task The_gateway_api_routes_serve_what_the_ingresses_serve()
    {
        var built = await ComposeAsync("prod", "gateway-api");
        Assert.Empty(built.Of<V1Ingress>());
        var routes = built.Trees.Where(t => (string?)t["kind"] == "HTTPRoute").ToDictionary(t => (string)t["metadata"]!["name"]!);
        var publicPaths = routes["gateway"]["spec"]!["rules"]!.AsArray().SelectMany(r => r!["matches"]!.AsArray())
            .Select(m => ((string)m!["path"]!["value"]!, (string)m["path"]!["type"]! == "PathPrefix" ? "Prefix" : "Exact")).ToList();
        Assert.Equal(KubernetesPublishing.PublicPaths, publicPaths);
        Assert.Equal("/bootstrap", (string?)routes["gateway-internal"]["spec"]!["rules"]![0]!["matches"]![0]!["path"]!["value"]);
        Assert.NotEqual((string?)routes["gateway"]["spec"]!["parentRefs"]![0]!["name"], (string?)routes["gateway-internal"]["spec"]!["parentRefs"]![0]!["name"]);
        Assert.All(built.Of<V1NetworkPolicy>().Where(p => p.Metadata.Name is "gateway" or "admin"),
            p => Assert.Equal("gateway-system", p.Spec.Ingress[0].FromProperty.Single().NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]));
    }

    [Fact]
    public async Task Services_selectors_and_probes_point_at_what_exists()
    {
        var built = await OverlayAsync("prod");
        var workloads = PodSpecs(built).ToList();
        foreach (var (name, template, spec) in workloads)
        {
            foreach (var c in spec.Containers)
            {
                var ports = c.Ports?.SelectMany(p => new[] { p.Name, p.ContainerPort.ToString() }).ToHashSet() ?? [];
                foreach (var probe in new[] { c.ReadinessProbe, c.LivenessProbe, c.StartupProbe }.Where(p => p?.HttpGet is not null))
                {
                    Assert.True(ports.Contains(probe!.HttpGet.Port.Value), $"{name}: probe port {probe.HttpGet.Port.Value} is not a container port");
                }
            }
        }
        foreach (var service in built.Of<V1Service>())
        {
            var target = workloads.Where(w => service.Spec.Selector.All(l => w.Template.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
            Assert.True(target.Count == 1, $"service {service.Metadata.Name} selects {target.Count} workloads");
            var ports = target[0].Spec.Containers.SelectMany(c => c.Ports ?? []).SelectMany(p => new[] { p.Name, p.ContainerPort.ToString() }).ToHashSet();
            Assert.All(service.Spec.Ports, p => Assert.Contains(p.TargetPort.Value, ports));
        }
        foreach (var ingress in built.Of<V1Ingress>())
        {
            Assert.All(ingress.Spec.Rules.SelectMany(r => r.Http.Paths), p => Assert.Contains(built.Of<V1Service>(), s => s.Metadata.Name == p.Backend.Service.Name));
        }
        var gateway = built.Of<V1StatefulSet>().Single(s => s.Metadata.Name == "gateway");
        Assert.Contains(built.Of<V1Service>(), s => s.Metadata.Name == gateway.Spec.ServiceName && s.Spec.ClusterIP == "None");
        Assert.Equal("ClusterIP", built.Of<V1Service>().Single(s => s.Metadata.Name == "gateway-management").Spec.Type);
        foreach (var pdb in built.Of<V1PodDisruptionBudget>())
        {
            Assert.Single(workloads, w => pdb.Spec.Selector.MatchLabels.All(l => w.Template.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value));
        }
        Assert.All(built.Trees, t => Assert.Equal("claudeproxy", (string?)t["metadata"]!["namespace"] ?? ((string?)t["kind"] == "Namespace" ? "claudeproxy" : null)));
    }

    [Fact]
    public void The_aspire_manifest_lists_the_projects_and_references_of_the_model()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(Base, "aspire-manifest.json")));
        var resources = json.RootElement.GetProperty("resources");
        Assert.Equal("project.v0", resources.GetProperty("gateway").GetProperty("type").GetString());
        var gatewayEnv = resources.GetProperty("gateway").GetProperty("env");
        Assert.Equal("{redis.connectionString}", gatewayEnv.GetProperty("ConnectionStrings__redis").GetString());
        Assert.Equal("{claudeproxydb.connectionString}", gatewayEnv.GetProperty("ConnectionStrings__claudeproxydb").GetString());
        Assert.Equal("{gateway.bindings.management.url}", resources.GetProperty("admin").GetProperty("env").GetProperty("services__gateway__management__0").GetString());
        Assert.Equal("migrate", resources.GetProperty("migrations").GetProperty("args")[0].GetString());
    }
}
