using System.Diagnostics;
using System.Text.Json;
using ClaudeProxy.Tests.Infrastructure;
using k8s;
using k8s.Models;

namespace ClaudeProxy.Tests;

/// <summary>The published Kubernetes base: up to date, valid for kustomize, and consistent object by object.</summary>
public sealed class ManifestTests
{
    private static readonly string K8s = Path.Combine(Repo.Root, "deploy", "k8s");

    private static async Task<(int Code, string Out, string Err)> RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Repo.Root };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return (process.ExitCode, await stdout, await stderr);
    }

    private static async Task<List<object>> ObjectsAsync()
    {
        var (code, yaml, err) = await RunAsync("kubectl", "kustomize", K8s);
        Assert.True(code == 0, err);
        return KubernetesYaml.LoadAllFromString(yaml);
    }

    [Fact]
    public async Task The_committed_manifests_are_what_the_apphost_publishes_now()
    {
        var k8s = Directory.CreateTempSubdirectory("claudeproxy-publish-").FullName;
        try
        {
            // What `aspire publish -o deploy/k8s` runs: Aspire's manifest publisher, then the AppHost's Kubernetes step.
            var (code, stdout, stderr) = await RunAsync("dotnet", Repo.AppHostDll, "--operation", "publish", "--step", "publish", "--output-path", k8s);
            Assert.True(code == 0, stderr + stdout);
            var published = Directory.GetFiles(k8s).Select(Path.GetFileName).Order().ToList();
            var committed = Directory.GetFiles(K8s).Select(Path.GetFileName).Order().ToList();
            Assert.Equal(committed, published);
            foreach (var name in published)
            {
                var fresh = await File.ReadAllTextAsync(Path.Combine(k8s, name!));
                var mine = await File.ReadAllTextAsync(Path.Combine(K8s, name!));
                if (name == "aspire-manifest.json")
                {
                    // Project paths are relative to the output folder; compare everything else.
                    fresh = RelativePaths(fresh);
                    mine = RelativePaths(mine);
                }
                Assert.True(fresh == mine, $"deploy/k8s/{name} is out of date: run aspire publish -o deploy/k8s (or ./run.sh publish)");
            }
        }
        finally
        {
            Directory.Delete(k8s, recursive: true);
        }
    }

    private static string RelativePaths(string json) => System.Text.RegularExpressions.Regex.Replace(json, "\"path\": \"[^\"]*/(ClaudeProxy\\.[A-Za-z]+\\.csproj)\"", "\"path\": \"$1\"");

    [Fact]
    public async Task Every_object_parses_as_its_typed_model_and_the_required_ones_are_there()
    {
        var objects = await ObjectsAsync();
        var kinds = objects.Select(o => ((IKubernetesObject)o).Kind + "/" + ((IKubernetesObject<V1ObjectMeta>)o).Metadata.Name).ToHashSet();
        foreach (var expected in new[]
        {
            "Deployment/gateway", "Deployment/admin", "Service/gateway", "Service/gateway-management", "Service/admin", "HorizontalPodAutoscaler/gateway",
            "PodDisruptionBudget/gateway", "StatefulSet/redis", "StatefulSet/postgres", "Service/redis", "Service/postgres", "ConfigMap/claudeproxy-config",
            "Secret/claudeproxy-secrets", "Job/migrations", "Ingress/gateway", "NetworkPolicy/redis", "NetworkPolicy/postgres", "NetworkPolicy/gateway",
        })
        {
            Assert.Contains(expected, kinds);
        }
        Assert.IsType<V1Deployment>(objects.Single(o => o is V1Deployment d && d.Metadata.Name == "gateway"));

        var gateway = objects.OfType<V1Deployment>().Single(d => d.Metadata.Name == "gateway");
        Assert.Equal(2, gateway.Spec.Replicas);
        var container = gateway.Spec.Template.Spec.Containers.Single();
        Assert.True(gateway.Spec.Template.Spec.SecurityContext.RunAsNonRoot);
        Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
        Assert.True(gateway.Spec.Template.Spec.TerminationGracePeriodSeconds >= 600);
        Assert.NotNull(container.Resources.Requests);
        Assert.NotNull(container.Resources.Limits);
        Assert.Equal("/readyz", container.ReadinessProbe.HttpGet.Path);
        Assert.Equal("/healthz", container.LivenessProbe.HttpGet.Path);
        Assert.Equal("ClusterIP", objects.OfType<V1Service>().Single(s => s.Metadata.Name == "gateway-management").Spec.Type);
        var ingress = objects.OfType<V1Ingress>().Single();
        Assert.Equal("off", ingress.Metadata.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"]);
        Assert.Equal("gateway", ingress.Spec.Rules.Single().Http.Paths.Single().Backend.Service.Name);
        Assert.All(objects.OfType<V1Secret>().Single().StringData.Values, v => Assert.Contains("REPLACE", v));
        Assert.Equal(["migrate"], objects.OfType<V1Job>().Single().Spec.Template.Spec.Containers.Single().Args);
    }

    [Fact]
    public async Task Selectors_match_labels_and_probes_use_ports_that_exist()
    {
        var objects = await ObjectsAsync();
        var workloads = objects.OfType<V1Deployment>().Select(d => (d.Metadata.Name, d.Spec.Selector.MatchLabels, d.Spec.Template))
            .Concat(objects.OfType<V1StatefulSet>().Select(s => (s.Metadata.Name, s.Spec.Selector.MatchLabels, s.Spec.Template))).ToList();
        foreach (var (name, selector, template) in workloads)
        {
            Assert.All(selector, l => Assert.Equal(l.Value, template.Metadata.Labels[l.Key]));
            foreach (var c in template.Spec.Containers)
            {
                var ports = c.Ports?.SelectMany(p => new[] { p.Name, p.ContainerPort.ToString() }).ToHashSet() ?? [];
                foreach (var probe in new[] { c.ReadinessProbe, c.LivenessProbe }.Where(p => p?.HttpGet is not null))
                {
                    Assert.True(ports.Contains(probe!.HttpGet.Port.Value), $"{name}: probe port {probe.HttpGet.Port.Value} is not a container port");
                }
            }
        }
        foreach (var service in objects.OfType<V1Service>())
        {
            var target = workloads.Where(w => service.Spec.Selector.All(l => w.Template.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
            Assert.True(target.Count == 1, $"service {service.Metadata.Name} selects {target.Count} workloads");
            var ports = target[0].Template.Spec.Containers.SelectMany(c => c.Ports ?? []).SelectMany(p => new[] { p.Name, p.ContainerPort.ToString() }).ToHashSet();
            Assert.All(service.Spec.Ports, p => Assert.Contains(p.TargetPort.Value, ports));
        }
        var hpa = objects.OfType<V2HorizontalPodAutoscaler>().Single();
        Assert.Contains(objects.OfType<V1Deployment>(), d => d.Metadata.Name == hpa.Spec.ScaleTargetRef.Name);
        var pdb = objects.OfType<V1PodDisruptionBudget>().Single();
        Assert.Equal(workloads.Single(w => w.Name == "gateway").MatchLabels, pdb.Spec.Selector.MatchLabels);
        foreach (var policy in objects.OfType<V1NetworkPolicy>())
        {
            Assert.Single(workloads, w => policy.Spec.PodSelector.MatchLabels.All(l => w.Template.Metadata.Labels[l.Key] == l.Value));
        }
    }

    [Fact]
    public async Task Every_setting_a_container_needs_is_defined()
    {
        var objects = await ObjectsAsync();
        var config = objects.OfType<V1ConfigMap>().Single().Data;
        var secret = objects.OfType<V1Secret>().Single().StringData;
        var required = new Dictionary<string, string[]>
        {
            ["gateway"] = ["ANTHROPIC_API_KEY", "JWT_SECRET", "ADMIN_API_KEY", "ConnectionStrings__redis", "ConnectionStrings__claudeproxydb", "PORT", "MANAGEMENT_PORT"],
            ["migrations"] = ["ConnectionStrings__claudeproxydb"],
            ["admin"] = ["ADMIN_API_KEY", "ADMIN_PASSWORD_HASH", "services__gateway__management__0", "PORT"],
            ["postgres"] = ["POSTGRES_PASSWORD"],
        };
        var templates = objects.OfType<V1Deployment>().Select(d => (d.Metadata.Name, d.Spec.Template.Spec))
            .Concat(objects.OfType<V1StatefulSet>().Select(s => (s.Metadata.Name, s.Spec.Template.Spec)))
            .Concat(objects.OfType<V1Job>().Select(j => (j.Metadata.Name, j.Spec.Template.Spec)));
        foreach (var (name, spec) in templates)
        {
            foreach (var container in spec.Containers)
            {
                var defined = new HashSet<string>();
                foreach (var from in container.EnvFrom ?? [])
                {
                    defined.UnionWith(from.ConfigMapRef is not null ? config.Keys : secret.Keys);
                }
                foreach (var env in container.Env ?? [])
                {
                    if (env.ValueFrom?.SecretKeyRef is { } s)
                    {
                        Assert.True(secret.ContainsKey(s.Key), $"{name}: secret key {s.Key} is missing");
                    }
                    if (env.ValueFrom?.ConfigMapKeyRef is { } c)
                    {
                        Assert.True(config.ContainsKey(c.Key), $"{name}: config key {c.Key} is missing");
                    }
                    defined.Add(env.Name);
                }
                foreach (var setting in required.GetValueOrDefault(name, []))
                {
                    Assert.True(defined.Contains(setting), $"{name} reads {setting} but nothing defines it");
                }
            }
        }
    }

    [Fact]
    public void The_aspire_manifest_lists_the_projects_and_references_of_the_model()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(K8s, "aspire-manifest.json")));
        var resources = json.RootElement.GetProperty("resources");
        Assert.Equal("project.v0", resources.GetProperty("gateway").GetProperty("type").GetString());
        var gatewayEnv = resources.GetProperty("gateway").GetProperty("env");
        Assert.Equal("{redis.connectionString}", gatewayEnv.GetProperty("ConnectionStrings__redis").GetString());
        Assert.Equal("{claudeproxydb.connectionString}", gatewayEnv.GetProperty("ConnectionStrings__claudeproxydb").GetString());
        Assert.Equal("{gateway.bindings.management.url}", resources.GetProperty("admin").GetProperty("env").GetProperty("services__gateway__management__0").GetString());
        Assert.Equal("migrate", resources.GetProperty("migrations").GetProperty("args")[0].GetString());
    }
}
