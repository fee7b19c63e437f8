#pragma warning disable ASPIREPIPELINES001, ASPIREPIPELINES004 // Aspire's publishing pipeline is experimental in 13.6.

using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Aspire.Hosting.Pipelines;

namespace ClaudeProxy.AppHost.Kubernetes;

/// <summary>
/// The "k8s" publishing step: writes the kustomize base (<c>aspire publish -o deploy/k8s/base</c>) beside the Aspire
/// manifest, from the application model. The model gives the values (ports, replicas, images, which settings each
/// project reads and whether they are secret, connection strings turned into Service names); the YAML shapes are the
/// files in <c>Kubernetes/templates</c>, with <c>{{name}}</c> placeholders. The overlays and components beside the base
/// (<c>deploy/k8s/overlays</c>, <c>deploy/k8s/components</c>) are written by hand: they are each company's choices.
/// </summary>
public static partial class KubernetesPublishing
{
    public const string Registry = "ghcr.io/example";

    /// <summary>The hosts of the example: overlays replace them with the company's.</summary>
    public const string PublicHost = "claudeproxy.example.com", InternalHost = "claudeproxy.internal.example.com", AdminHost = "claudeproxy-admin.internal.example.com";

    /// <summary>What the public host serves: the Anthropic API, token renewal and a device's own usage; never /bootstrap or the management API.</summary>
    public static readonly (string Path, string Type)[] PublicPaths =
    [
        ("/v1", "Prefix"), ("/refresh", "Exact"), ("/api/hello", "Exact"), ("/admin/usage", "Exact"), ("/admin/stats", "Exact"), ("/admin/circuit-breaker", "Exact"),
        // Claude Code's gateway sign-in: discovery, the OAuth endpoints and the provider's callback, the verification
        // page people's browsers open, and the settings Claude Code fetches.
        ("/.well-known/oauth-authorization-server", "Exact"), ("/oauth", "Prefix"), ("/device", "Prefix"), ("/managed/settings", "Exact"),
    ];

    /// <summary>
    /// The gateway's longest upstream call (its UPSTREAM_TIMEOUT_SECONDS default) and what follows from it: a stopping
    /// pod waits that long plus a margin for its streams, and the kubelet waits for that, the preStop pause and the
    /// usage queue's flush.
    /// </summary>
    public const int UpstreamTimeoutSeconds = 600, ShutdownTimeoutSeconds = UpstreamTimeoutSeconds + 30, PreStopSeconds = 10,
        GracePeriodSeconds = PreStopSeconds + ShutdownTimeoutSeconds + 30, IngressReadTimeoutSeconds = UpstreamTimeoutSeconds + 60;

    public static IDistributedApplicationBuilder AddKubernetesPublishing(this IDistributedApplicationBuilder builder)
    {
        var templates = Path.Combine(builder.AppHostDirectory, "Kubernetes", "templates");
        builder.Pipeline.AddStep("k8s", async context =>
        {
            var output = context.Services.GetRequiredService<IPipelineOutputService>().GetOutputDirectory();
            var model = await KubernetesModel.ReadAsync(context.Model, context.ExecutionContext, context.CancellationToken);
            var written = await WriteAsync(model, templates, output, context.CancellationToken);
            context.Logger.LogInformation("Wrote the Kubernetes base ({Files}) to {Output}", string.Join(", ", written), output);
        }, dependsOn: "publish-manifest", requiredBy: WellKnownPipelineSteps.Publish);
        return builder;
    }

    /// <summary>Fills every template and writes it, with the kustomization listing them; returns the file names.</summary>
    public static async Task<List<string>> WriteAsync(KubernetesModel model, string templates, string output, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(output);
        var files = Directory.GetFiles(templates, "*.yaml").Select(Path.GetFileName).OfType<string>()
            .Where(f => f != "kustomization.yaml").Order(StringComparer.Ordinal).ToList();
        var values = model.Values();
        values["resources"] = string.Join('\n', files.Select(f => "  - " + f));
        foreach (var file in files.Append("kustomization.yaml"))
        {
            var text = Fill(await File.ReadAllTextAsync(Path.Combine(templates, file), cancellationToken), values, file);
            await File.WriteAllTextAsync(Path.Combine(output, file), text, cancellationToken);
        }
        return [.. files.Append("kustomization.yaml")];
    }

    private static string Fill(string template, Dictionary<string, string> values, string file) =>
        Placeholder().Replace(template, m => values.TryGetValue(m.Groups[1].Value, out var value) ? value
            : throw new InvalidOperationException($"{file}: the application model has no value for {{{{{m.Groups[1].Value}}}}}"));

    [GeneratedRegex(@"\{\{([A-Za-z0-9_.-]+)\}\}")]
    private static partial Regex Placeholder();
}

/// <summary>What the Kubernetes base needs from the application model, read in publish mode.</summary>
public sealed class KubernetesModel
{
    /// <summary>Settings every project's pod reads from the ConfigMap.</summary>
    public SortedDictionary<string, string> Config { get; } = new(StringComparer.Ordinal);

    /// <summary>The projects' secret settings (the Secret claudeproxy-secrets).</summary>
    public IEnumerable<string> AppSecrets => ProjectSecrets.Values.SelectMany(keys => keys).Distinct().Order(StringComparer.Ordinal);

    /// <summary>The in-cluster databases' passwords (the Secret claudeproxy-databases).</summary>
    public SortedSet<string> DatabaseSecrets { get; } = new(StringComparer.Ordinal);

    /// <summary>Which secret settings each project reads.</summary>
    public SortedDictionary<string, SortedSet<string>> ProjectSecrets { get; } = new(StringComparer.Ordinal);

    /// <summary>Flat values for the templates: <c>gateway.http.port</c>, <c>redis.image</c>, <c>database</c>...</summary>
    public Dictionary<string, string> Scalars { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, string> Values()
    {
        var values = new Dictionary<string, string>(Scalars, StringComparer.Ordinal)
        {
            ["registry"] = KubernetesPublishing.Registry,
            ["version"] = Version,
            ["publicHost"] = KubernetesPublishing.PublicHost,
            ["internalHost"] = KubernetesPublishing.InternalHost,
            ["adminHost"] = KubernetesPublishing.AdminHost,
            ["gateway.upstreamTimeoutSeconds"] = Invariant(KubernetesPublishing.UpstreamTimeoutSeconds),
            ["gateway.shutdownTimeoutSeconds"] = Invariant(KubernetesPublishing.ShutdownTimeoutSeconds),
            ["gateway.preStopSeconds"] = Invariant(KubernetesPublishing.PreStopSeconds),
            ["gateway.gracePeriodSeconds"] = Invariant(KubernetesPublishing.GracePeriodSeconds),
            ["ingress.readTimeoutSeconds"] = Invariant(KubernetesPublishing.IngressReadTimeoutSeconds),
            ["ingress.publicPaths"] = string.Join('\n', KubernetesPublishing.PublicPaths.Select(p =>
                $"          - path: {p.Path}\n            pathType: {p.Type}\n            backend: {{service: {{name: gateway, port: {{name: http}}}}}}")),
            ["config"] = string.Join('\n', Config.Select(c => $"  {c.Key}: {Quote(c.Value)}")),
            ["secretKeys.app"] = string.Join('\n', AppSecrets.Select(k => "#   " + k)),
            ["secretKeys.databases"] = string.Join('\n', DatabaseSecrets.Select(k => "#   " + k)),
        };
        foreach (var (project, keys) in ProjectSecrets)
        {
            // One secretKeyRef per key, and each workload only the keys it reads.
            values[$"{project}.secretEnv"] = string.Join('\n', keys.Select(k =>
                $"            - name: {k}\n              valueFrom: {{secretKeyRef: {{name: {AppSecretName}, key: {k}}}}}"));
        }
        return values;
    }

    public const string AppSecretName = "claudeproxy-secrets", DatabaseSecretName = "claudeproxy-databases";

    /// <summary>The image tag of this build: the version of the AppHost assembly (Directory.Build.props), never "latest".</summary>
    public static string Version { get; } = typeof(KubernetesModel).Assembly
        .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
        .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().Single().InformationalVersion.Split('+')[0];

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Quote(string value) => "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    public static async Task<KubernetesModel> ReadAsync(DistributedApplicationModel model, DistributedApplicationExecutionContext execution, CancellationToken cancellationToken)
    {
        var k8s = new KubernetesModel();
        foreach (var resource in model.Resources)
        {
            switch (resource)
            {
                case ProjectResource project:
                    await k8s.AddProjectAsync(project, execution, cancellationToken);
                    break;
                case ContainerResource container:
                    await k8s.AddContainerAsync(container, execution, cancellationToken);
                    break;
                case IResourceWithParent { Parent: ContainerResource } database:
                    k8s.Scalars["database"] = database.Name;
                    break;
            }
        }
        return k8s;
    }

    private async Task AddProjectAsync(ProjectResource project, DistributedApplicationExecutionContext execution, CancellationToken cancellationToken)
    {
        var name = project.Name;
        var path = project.GetProjectMetadata().ProjectPath;
        // One image per project: ClaudeProxy.Gateway builds claudeproxy-gateway, which the migration Job runs too.
        Scalars[$"{name}.image"] = "claudeproxy-" + Path.GetFileNameWithoutExtension(path).Split('.')[^1].ToLowerInvariant();
        Scalars[$"{name}.replicas"] = (project.TryGetLastAnnotation<ReplicaAnnotation>(out var replicas) ? replicas.Replicas : 1).ToString(CultureInfo.InvariantCulture);
        foreach (var endpoint in project.Annotations.OfType<EndpointAnnotation>())
        {
            Scalars[$"{name}.{endpoint.Name}.port"] = Port(project, endpoint).ToString(CultureInfo.InvariantCulture);
        }
        var args = new List<object>();
        var argsContext = new CommandLineArgsCallbackContext(args, project, cancellationToken);
        foreach (var callback in project.Annotations.OfType<CommandLineArgsCallbackAnnotation>())
        {
            await callback.Callback(argsContext);
        }
        var resolvedArgs = new List<string>();
        foreach (var arg in args)
        {
            resolvedArgs.Add((await ResolveAsync(arg, cancellationToken)).Text);
        }
        Scalars[$"{name}.args"] = "[" + string.Join(", ", resolvedArgs.Select(a => "\"" + a + "\"")) + "]";

        foreach (var (key, value) in await EnvironmentAsync(project, execution, cancellationToken))
        {
            if (Published(key, value))
            {
                var resolved = await ResolveAsync(value, cancellationToken);
                if (resolved.Secret)
                {
                    (ProjectSecrets.TryGetValue(name, out var keys) ? keys : ProjectSecrets[name] = new(StringComparer.Ordinal)).Add(key);
                }
                else
                {
                    Config[key] = resolved.Text;
                }
            }
        }
    }

    /// <summary>
    /// What a project's pods get from the ConfigMap and the Secret: its own settings, connection strings and service
    /// endpoints. Left out: Aspire's telemetry settings, its per-resource hints (REDIS_HOST, CLAUDEPROXYDB_URI...) and
    /// the project's own ports, which each workload's template sets.
    /// </summary>
    private static bool Published(string key, object value) =>
        !key.StartsWith("OTEL_", StringComparison.Ordinal) && key != "ASPNETCORE_FORWARDEDHEADERS_ENABLED" &&
        (value is string or ParameterResource ||
         key.StartsWith("ConnectionStrings__", StringComparison.Ordinal) || key.StartsWith("services__", StringComparison.Ordinal));

    private async Task AddContainerAsync(ContainerResource container, DistributedApplicationExecutionContext execution, CancellationToken cancellationToken)
    {
        var name = container.Name;
        if (container.TryGetLastAnnotation<ContainerImageAnnotation>(out var image))
        {
            Scalars[$"{name}.image"] = $"{(image.Registry is { Length: > 0 } r ? r + "/" : "")}{image.Image}:{image.Tag}";
        }
        foreach (var endpoint in container.Annotations.OfType<EndpointAnnotation>())
        {
            Scalars[$"{name}.port"] = Port(container, endpoint).ToString(CultureInfo.InvariantCulture);
        }
        foreach (var (key, value) in await EnvironmentAsync(container, execution, cancellationToken))
        {
            var resolved = await ResolveAsync(value, cancellationToken);
            if (resolved.Secret)
            {
                DatabaseSecrets.Add(key);
            }
            else
            {
                Scalars[$"{name}.{key.Replace($"{name.ToUpperInvariant()}_", "", StringComparison.Ordinal).ToLowerInvariant()}"] = resolved.Text;
            }
        }
    }

    private static async Task<Dictionary<string, object>> EnvironmentAsync(IResource resource, DistributedApplicationExecutionContext execution, CancellationToken cancellationToken)
    {
        var context = new EnvironmentCallbackContext(execution, resource, [], cancellationToken);
        foreach (var callback in resource.Annotations.OfType<EnvironmentCallbackAnnotation>())
        {
            await callback.Callback(context);
        }
        return context.EnvironmentVariables;
    }

    /// <summary>A project listens on the port the model gives it; a container on its target port.</summary>
    private static int Port(IResource resource, EndpointAnnotation endpoint) =>
        (resource is ContainerResource ? endpoint.TargetPort ?? endpoint.Port : endpoint.Port ?? endpoint.TargetPort)
        ?? throw new InvalidOperationException($"{resource.Name}: endpoint {endpoint.Name} has no port");

    /// <summary>Inside the cluster an endpoint is a Service: the resource's name for its first endpoint, "resource-endpoint" for others.</summary>
    private static string ServiceName(EndpointReference endpoint)
    {
        var first = endpoint.Resource.Annotations.OfType<EndpointAnnotation>().First().Name;
        return endpoint.EndpointName == first ? endpoint.Resource.Name : $"{endpoint.Resource.Name}-{endpoint.EndpointName}";
    }

    private static int Port(EndpointReference endpoint) =>
        Port(endpoint.Resource, endpoint.Resource.Annotations.OfType<EndpointAnnotation>().Single(a => a.Name == endpoint.EndpointName));

    private sealed record Resolved(string Text, bool Secret);

    /// <summary>A value of the model as it reads inside the cluster; secret when any part of it is a secret parameter.</summary>
    private static async Task<Resolved> ResolveAsync(object value, CancellationToken cancellationToken)
    {
        switch (value)
        {
            case string text:
                return new(text, false);
            case ParameterResource parameter:
                var placeholder = "REPLACE_WITH_" + Regex.Replace((parameter.Description ?? parameter.Name).ToUpperInvariant(), "[^A-Z0-9]+", "_");
                return new(parameter.Secret ? placeholder : parameter.Default?.GetDefaultValue() ?? placeholder, parameter.Secret);
            case ConnectionStringReference reference:
                return await ResolveAsync(reference.Resource.ConnectionStringExpression, cancellationToken);
            case IResourceWithConnectionString resource:
                return await ResolveAsync(resource.ConnectionStringExpression, cancellationToken);
            case EndpointReference endpoint:
                return new($"{endpoint.EndpointAnnotation.UriScheme}://{ServiceName(endpoint)}:{Port(endpoint)}", false);
            case EndpointReferenceExpression expression:
                var ep = expression.Endpoint;
                return new(expression.Property switch
                {
                    EndpointProperty.Host or EndpointProperty.IPV4Host => ServiceName(ep),
                    EndpointProperty.Port or EndpointProperty.TargetPort => Port(ep).ToString(CultureInfo.InvariantCulture),
                    EndpointProperty.HostAndPort => $"{ServiceName(ep)}:{Port(ep)}",
                    EndpointProperty.Scheme => ep.EndpointAnnotation.UriScheme,
                    EndpointProperty.TlsEnabled => "False",
                    _ => $"{ep.EndpointAnnotation.UriScheme}://{ServiceName(ep)}:{Port(ep)}",
                }, false);
            case ReferenceExpression { IsConditional: true } conditional:
                var condition = await ResolveAsync(conditional.Condition!, cancellationToken);
                return await ResolveAsync(string.Equals(condition.Text, conditional.MatchValue, StringComparison.OrdinalIgnoreCase)
                    ? conditional.WhenTrue! : conditional.WhenFalse!, cancellationToken);
            case ReferenceExpression expression:
                var parts = new object[expression.ValueProviders.Count];
                var secret = false;
                for (var i = 0; i < parts.Length; i++)
                {
                    var part = await ResolveAsync(expression.ValueProviders[i], cancellationToken);
                    parts[i] = part.Text;
                    secret |= part.Secret;
                }
                return new(string.Format(CultureInfo.InvariantCulture, expression.Format, parts), secret);
            default:
                throw new NotSupportedException($"{value.GetType().Name} has no Kubernetes form");
        }
    }
}
