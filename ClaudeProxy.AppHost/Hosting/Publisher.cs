using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ClaudeProxy.AppHost.Hosting;

/// <summary>
/// Writes what the AppHost runs as a kustomize base for Kubernetes, an Aspire manifest, and the Dockerfiles. The
/// output depends on the resource model alone, so it is reproducible and a test can tell when it is out of date.
/// </summary>
public static class Publisher
{
    public const string Image = "ghcr.io/example/claudeproxy";
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static string ReferenceName(object reference) => reference switch
    {
        Resource r => r.Name,
        Endpoint e => $"{e.Project.Name}.{e.Name}",
        _ => reference.ToString() ?? "",
    };

    public static void Write(IReadOnlyList<Resource> resources, string output, string root)
    {
        Directory.CreateDirectory(output);
        var files = KubernetesFiles(resources);
        foreach (var (name, text) in files)
        {
            File.WriteAllText(Path.Combine(output, name), text);
        }
        File.WriteAllText(Path.Combine(output, "aspire-manifest.json"), AspireManifest(resources, output, root));
        var docker = Path.GetFullPath(Path.Combine(output, "..", "docker"));
        Directory.CreateDirectory(docker);
        File.WriteAllText(Path.Combine(docker, "gateway.Dockerfile"), Dockerfile("ClaudeProxy.Gateway", 3001, 3002));
        File.WriteAllText(Path.Combine(docker, "admin.Dockerfile"), Dockerfile("ClaudeProxy.Admin", 3003, null));
    }

    public static SortedDictionary<string, string> KubernetesFiles(IReadOnlyList<Resource> resources)
    {
        var gateway = resources.OfType<ProjectResource>().Single(p => p.Name == "gateway");
        var proxyPort = gateway.GetEndpoint("http").Port;
        var managementPort = gateway.GetEndpoint("management").Port;
        var admin = resources.OfType<ProjectResource>().Single(p => p.Name == "admin");
        var adminPort = admin.Endpoints[0].Port;
        var db = resources.OfType<DatabaseResource>().SingleOrDefault() ?? resources.OfType<PostgresResource>().Single().Databases.Single();
        var files = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["configmap.yaml"] = $"""
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: claudeproxy-config
                  labels: {Labels("config")}
                data:
                  HOST: "0.0.0.0"
                  PORT: "{proxyPort}"
                  MANAGEMENT_PORT: "{managementPort}"
                  ANTHROPIC_BASE_URL: "https://api.anthropic.com"
                  BOOTSTRAP_MODE: "open"
                  SPEND_CAP_PERIOD: "month"
                  REDIS_FAILURE_MODE: "open"
                  MIGRATE_ON_START: "false"
                  USAGE_SPOOL_DIR: "/var/spool/claudeproxy"
                  LOG_LEVEL: "info"
                  ConnectionStrings__redis: "redis:6379"
                  services__gateway__management__0: "http://gateway-management:{managementPort}"
                  OTEL_EXPORTER_OTLP_ENDPOINT: ""

                """,
            ["secret.yaml"] = $"""
                # Placeholders only: replace every value (for example with a sealed secret or an external secret store).
                apiVersion: v1
                kind: Secret
                metadata:
                  name: claudeproxy-secrets
                  labels: {Labels("secrets")}
                type: Opaque
                stringData:
                  ANTHROPIC_API_KEY: "REPLACE_WITH_THE_ANTHROPIC_API_KEY"
                  JWT_SECRET: "REPLACE_WITH_AT_LEAST_32_RANDOM_BYTES"
                  ADMIN_API_KEY: "REPLACE_WITH_A_RANDOM_OPERATOR_KEY"
                  ADMIN_PASSWORD_HASH: "REPLACE_WITH_THE_OUTPUT_OF_hash-password"
                  POSTGRES_PASSWORD: "REPLACE_WITH_A_DATABASE_PASSWORD"
                  ConnectionStrings__{db.Name}: "Host=postgres;Port=5432;Username=claudeproxy;Password=REPLACE_WITH_A_DATABASE_PASSWORD;Database={db.Name}"

                """,
            ["gateway.yaml"] = $"""
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: gateway
                  labels: {Labels("gateway")}
                spec:
                  replicas: 2
                  selector:
                    matchLabels: {Selector("gateway")}
                  template:
                    metadata:
                      labels: {Labels("gateway")}
                    spec:
                      # Streams may run for ten minutes: give them that long to finish before the pod is killed.
                      terminationGracePeriodSeconds: 660
                      securityContext: {PodSecurity()}
                      containers:
                        - name: gateway
                          image: {Image}-gateway:latest
                          ports:
                            - name: http
                              containerPort: {proxyPort}
                            - name: management
                              containerPort: {managementPort}
                          envFrom:
                            - configMapRef:
                                name: claudeproxy-config
                            - secretRef:
                                name: claudeproxy-secrets
                          env:
                            - name: OTEL_SERVICE_NAME
                              value: gateway
                          readinessProbe:
                            httpGet:
                              path: /readyz
                              port: http
                            periodSeconds: 5
                          livenessProbe:
                            httpGet:
                              path: /healthz
                              port: http
                            periodSeconds: 10
                          lifecycle:
                            preStop:
                              sleep:
                                seconds: 5
                          resources:
                            requests:
                              cpu: 250m
                              memory: 256Mi
                            limits:
                              cpu: "2"
                              memory: 1Gi
                          securityContext: {ContainerSecurity()}
                          volumeMounts:
                            - name: tmp
                              mountPath: /tmp
                            - name: spool
                              mountPath: /var/spool/claudeproxy
                      volumes:
                        - name: tmp
                          emptyDir: {"{}"}
                        - name: spool
                          emptyDir: {"{}"}
                ---
                apiVersion: v1
                kind: Service
                metadata:
                  name: gateway
                  labels: {Labels("gateway")}
                spec:
                  selector: {Selector("gateway")}
                  ports:
                    - name: http
                      port: 80
                      targetPort: http
                ---
                # The management API is never exposed outside the cluster.
                apiVersion: v1
                kind: Service
                metadata:
                  name: gateway-management
                  labels: {Labels("gateway")}
                spec:
                  type: ClusterIP
                  selector: {Selector("gateway")}
                  ports:
                    - name: management
                      port: {managementPort}
                      targetPort: management
                ---
                apiVersion: autoscaling/v2
                kind: HorizontalPodAutoscaler
                metadata:
                  name: gateway
                  labels: {Labels("gateway")}
                spec:
                  scaleTargetRef:
                    apiVersion: apps/v1
                    kind: Deployment
                    name: gateway
                  minReplicas: 2
                  maxReplicas: 10
                  metrics:
                    - type: Resource
                      resource:
                        name: cpu
                        target:
                          type: Utilization
                          averageUtilization: 70
                ---
                apiVersion: policy/v1
                kind: PodDisruptionBudget
                metadata:
                  name: gateway
                  labels: {Labels("gateway")}
                spec:
                  minAvailable: 1
                  selector:
                    matchLabels: {Selector("gateway")}

                """,
            ["admin.yaml"] = $"""
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: admin
                  labels: {Labels("admin")}
                spec:
                  replicas: 1
                  selector:
                    matchLabels: {Selector("admin")}
                  template:
                    metadata:
                      labels: {Labels("admin")}
                    spec:
                      securityContext: {PodSecurity()}
                      containers:
                        - name: admin
                          image: {Image}-admin:latest
                          ports:
                            - name: http
                              containerPort: {adminPort}
                          env:
                            - name: PORT
                              value: "{adminPort}"
                            - name: OTEL_SERVICE_NAME
                              value: admin
                            - name: services__gateway__management__0
                              valueFrom:
                                configMapKeyRef:
                                  name: claudeproxy-config
                                  key: services__gateway__management__0
                            - name: ADMIN_API_KEY
                              valueFrom:
                                secretKeyRef:
                                  name: claudeproxy-secrets
                                  key: ADMIN_API_KEY
                            - name: ADMIN_PASSWORD_HASH
                              valueFrom:
                                secretKeyRef:
                                  name: claudeproxy-secrets
                                  key: ADMIN_PASSWORD_HASH
                          readinessProbe:
                            httpGet:
                              path: /readyz
                              port: http
                          livenessProbe:
                            httpGet:
                              path: /healthz
                              port: http
                          resources:
                            requests:
                              cpu: 100m
                              memory: 192Mi
                            limits:
                              cpu: "1"
                              memory: 512Mi
                          securityContext: {ContainerSecurity()}
                          volumeMounts:
                            - name: tmp
                              mountPath: /tmp
                      volumes:
                        - name: tmp
                          emptyDir: {"{}"}
                ---
                apiVersion: v1
                kind: Service
                metadata:
                  name: admin
                  labels: {Labels("admin")}
                spec:
                  selector: {Selector("admin")}
                  ports:
                    - name: http
                      port: 80
                      targetPort: http

                """,
            ["redis.yaml"] = $"""
                apiVersion: apps/v1
                kind: StatefulSet
                metadata:
                  name: redis
                  labels: {Labels("redis")}
                spec:
                  serviceName: redis
                  replicas: 1
                  selector:
                    matchLabels: {Selector("redis")}
                  template:
                    metadata:
                      labels: {Labels("redis")}
                    spec:
                      securityContext: {PodSecurity(999)}
                      containers:
                        - name: redis
                          image: docker.io/library/redis:7.4
                          args: ["--appendonly", "yes", "--dir", "/data"]
                          ports:
                            - name: redis
                              containerPort: 6379
                          readinessProbe:
                            exec:
                              command: ["redis-cli", "ping"]
                          resources:
                            requests:
                              cpu: 100m
                              memory: 128Mi
                            limits:
                              memory: 512Mi
                          volumeMounts:
                            - name: data
                              mountPath: /data
                  volumeClaimTemplates:
                    - metadata:
                        name: data
                      spec:
                        accessModes: ["ReadWriteOnce"]
                        resources:
                          requests:
                            storage: 1Gi
                ---
                apiVersion: v1
                kind: Service
                metadata:
                  name: redis
                  labels: {Labels("redis")}
                spec:
                  selector: {Selector("redis")}
                  ports:
                    - name: redis
                      port: 6379
                      targetPort: redis

                """,
            ["postgres.yaml"] = $"""
                apiVersion: apps/v1
                kind: StatefulSet
                metadata:
                  name: postgres
                  labels: {Labels("postgres")}
                spec:
                  serviceName: postgres
                  replicas: 1
                  selector:
                    matchLabels: {Selector("postgres")}
                  template:
                    metadata:
                      labels: {Labels("postgres")}
                    spec:
                      securityContext: {PodSecurity(999)}
                      containers:
                        - name: postgres
                          image: docker.io/library/postgres:17
                          ports:
                            - name: postgres
                              containerPort: 5432
                          env:
                            - name: POSTGRES_USER
                              value: claudeproxy
                            - name: POSTGRES_DB
                              value: {db.Name}
                            - name: PGDATA
                              value: /var/lib/postgresql/data/pgdata
                            - name: POSTGRES_PASSWORD
                              valueFrom:
                                secretKeyRef:
                                  name: claudeproxy-secrets
                                  key: POSTGRES_PASSWORD
                          readinessProbe:
                            exec:
                              command: ["pg_isready", "-U", "claudeproxy"]
                          resources:
                            requests:
                              cpu: 250m
                              memory: 256Mi
                            limits:
                              memory: 1Gi
                          volumeMounts:
                            - name: data
                              mountPath: /var/lib/postgresql/data
                  volumeClaimTemplates:
                    - metadata:
                        name: data
                      spec:
                        accessModes: ["ReadWriteOnce"]
                        resources:
                          requests:
                            storage: 10Gi
                ---
                apiVersion: v1
                kind: Service
                metadata:
                  name: postgres
                  labels: {Labels("postgres")}
                spec:
                  selector: {Selector("postgres")}
                  ports:
                    - name: postgres
                      port: 5432
                      targetPort: postgres

                """,
            ["migrations.yaml"] = $"""
                apiVersion: batch/v1
                kind: Job
                metadata:
                  name: migrations
                  labels: {Labels("migrations")}
                spec:
                  backoffLimit: 6
                  template:
                    metadata:
                      labels: {Labels("migrations")}
                    spec:
                      restartPolicy: OnFailure
                      securityContext: {PodSecurity()}
                      containers:
                        - name: migrations
                          image: {Image}-gateway:latest
                          args: ["migrate"]
                          envFrom:
                            - configMapRef:
                                name: claudeproxy-config
                            - secretRef:
                                name: claudeproxy-secrets
                          securityContext: {ContainerSecurity()}
                          volumeMounts:
                            - name: tmp
                              mountPath: /tmp
                      volumes:
                        - name: tmp
                          emptyDir: {"{}"}

                """,
            ["ingress.yaml"] = $"""
                # The proxy alone is exposed; answers stream, so nothing is buffered and reads may last as long as a generation.
                apiVersion: networking.k8s.io/v1
                kind: Ingress
                metadata:
                  name: gateway
                  labels: {Labels("gateway")}
                  annotations:
                    nginx.ingress.kubernetes.io/proxy-buffering: "off"
                    nginx.ingress.kubernetes.io/proxy-request-buffering: "off"
                    nginx.ingress.kubernetes.io/proxy-read-timeout: "900"
                    nginx.ingress.kubernetes.io/proxy-send-timeout: "900"
                    nginx.ingress.kubernetes.io/proxy-body-size: "4m"
                    nginx.ingress.kubernetes.io/proxy-http-version: "1.1"
                spec:
                  ingressClassName: nginx
                  rules:
                    - host: claudeproxy.example.com
                      http:
                        paths:
                          - path: /
                            pathType: Prefix
                            backend:
                              service:
                                name: gateway
                                port:
                                  name: http

                """,
            ["networkpolicies.yaml"] = $"""
                # Only the gateway (and its migration job) reaches Redis and Postgres; only the admin app reaches the management port.
                apiVersion: networking.k8s.io/v1
                kind: NetworkPolicy
                metadata:
                  name: redis
                  labels: {Labels("redis")}
                spec:
                  podSelector:
                    matchLabels: {Selector("redis")}
                  policyTypes: ["Ingress"]
                  ingress:
                    - from:
                        - podSelector:
                            matchLabels: {Selector("gateway")}
                      ports:
                        - port: 6379
                ---
                apiVersion: networking.k8s.io/v1
                kind: NetworkPolicy
                metadata:
                  name: postgres
                  labels: {Labels("postgres")}
                spec:
                  podSelector:
                    matchLabels: {Selector("postgres")}
                  policyTypes: ["Ingress"]
                  ingress:
                    - from:
                        - podSelector:
                            matchLabels: {Selector("gateway")}
                        - podSelector:
                            matchLabels: {Selector("migrations")}
                      ports:
                        - port: 5432
                ---
                apiVersion: networking.k8s.io/v1
                kind: NetworkPolicy
                metadata:
                  name: gateway
                  labels: {Labels("gateway")}
                spec:
                  podSelector:
                    matchLabels: {Selector("gateway")}
                  policyTypes: ["Ingress"]
                  ingress:
                    - ports:
                        - port: {proxyPort}
                    - from:
                        - podSelector:
                            matchLabels: {Selector("admin")}
                      ports:
                        - port: {managementPort}

                """,
        };
        var kustomization = new StringBuilder("""
            # Written by: dotnet run --project ClaudeProxy.AppHost -- publish --output deploy/k8s
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:

            """);
        foreach (var name in files.Keys)
        {
            kustomization.Append("  - ").Append(name).Append('\n');
        }
        files["kustomization.yaml"] = kustomization.ToString();
        return files;
    }

    private static string Labels(string component) => $"{{app.kubernetes.io/name: claudeproxy, app.kubernetes.io/component: {component}}}";

    private static string Selector(string component) => Labels(component);

    private static string PodSecurity(int user = 10001) =>
        $"{{runAsNonRoot: true, runAsUser: {user}, runAsGroup: {user}, fsGroup: {user}, seccompProfile: {{type: RuntimeDefault}}}}";

    private static string ContainerSecurity() =>
        "{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}";

    /// <summary>The resources in Aspire's manifest format, so tools that read Aspire manifests see the same system.</summary>
    public static string AspireManifest(IReadOnlyList<Resource> resources, string output, string root)
    {
        var all = new JsonObject();
        foreach (var resource in resources)
        {
            switch (resource)
            {
                case RedisResource:
                    all[resource.Name] = new JsonObject
                    {
                        ["type"] = "container.v0", ["connectionString"] = $"{{{resource.Name}.bindings.tcp.host}}:{{{resource.Name}.bindings.tcp.port}}",
                        ["image"] = "docker.io/library/redis:7.4",
                        ["bindings"] = new JsonObject { ["tcp"] = Binding("tcp", 6379) },
                    };
                    break;
                case PostgresResource postgres:
                    all[resource.Name] = new JsonObject
                    {
                        ["type"] = "container.v0",
                        ["connectionString"] = $"Host={{{resource.Name}.bindings.tcp.host}};Port={{{resource.Name}.bindings.tcp.port}};Username=postgres;Password={{{resource.Name}-password.value}}",
                        ["image"] = "docker.io/library/postgres:17",
                        ["volumes"] = postgres.Persistent ? new JsonArray(new JsonObject { ["name"] = "claudeproxy-postgres-data", ["target"] = "/var/lib/postgresql/data", ["readOnly"] = false }) : new JsonArray(),
                        ["bindings"] = new JsonObject { ["tcp"] = Binding("tcp", 5432) },
                    };
                    foreach (var db in postgres.Databases)
                    {
                        all[db.Name] = new JsonObject
                        {
                            ["type"] = "value.v0", ["connectionString"] = $"{{{postgres.Name}.connectionString}};Database={db.Name}",
                        };
                    }
                    break;
                case AnthropicResource:
                    all[resource.Name] = new JsonObject
                    {
                        ["type"] = "parameter.v0", ["value"] = "{anthropic-api-key.value}",
                        ["inputs"] = new JsonObject { ["value"] = new JsonObject { ["type"] = "string", ["secret"] = true } },
                    };
                    break;
                case ProjectResource project:
                    var env = new JsonObject { ["OTEL_SERVICE_NAME"] = project.Name };
                    foreach (var reference in project.References)
                    {
                        switch (reference)
                        {
                            case RedisResource r:
                                env[$"ConnectionStrings__{r.Name}"] = $"{{{r.Name}.connectionString}}";
                                break;
                            case DatabaseResource d:
                                env[$"ConnectionStrings__{d.Name}"] = $"{{{d.Name}.connectionString}}";
                                break;
                            case AnthropicResource a:
                                env["ANTHROPIC_API_KEY"] = $"{{{a.Name}.value}}";
                                break;
                            case Endpoint e:
                                env[$"services__{e.Project.Name}__{e.Name}__0"] = $"{{{e.Project.Name}.bindings.{e.Name}.url}}";
                                break;
                        }
                    }
                    var bindings = new JsonObject();
                    foreach (var endpoint in project.Endpoints)
                    {
                        bindings[endpoint.Name] = Binding("http", endpoint.Port, external: endpoint.Name == "http");
                    }
                    var node = new JsonObject
                    {
                        ["type"] = "project.v0",
                        ["path"] = Path.GetRelativePath(output, Path.Combine(root, project.Project, project.Project + ".csproj")).Replace('\\', '/'),
                        ["env"] = env,
                        ["bindings"] = bindings,
                    };
                    if (project.Args.Length > 0)
                    {
                        node["args"] = new JsonArray([.. project.Args.Select(a => JsonValue.Create(a))]);
                    }
                    if (project.Replicas > 1 || project.Name == "gateway")
                    {
                        node["replicas"] = project.Name == "gateway" ? 2 : project.Replicas;
                    }
                    all[project.Name] = node;
                    break;
            }
        }
        var manifest = new JsonObject { ["$schema"] = "https://json.schemastore.org/aspire-8.0.json", ["resources"] = all };
        return manifest.ToJsonString(Indented) + "\n";
    }

    private static JsonObject Binding(string scheme, int port, bool external = false) => new()
    {
        ["scheme"] = scheme, ["protocol"] = "tcp", ["transport"] = scheme == "tcp" ? "tcp" : "http", ["targetPort"] = port, ["external"] = external,
    };

    private static string Dockerfile(string project, int port, int? second) => $"""
        # Written by: dotnet run --project ClaudeProxy.AppHost -- publish --output deploy/k8s
        # Build from the repository root: docker build -f deploy/docker/{(project.EndsWith("Admin", StringComparison.Ordinal) ? "admin" : "gateway")}.Dockerfile .
        FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
        WORKDIR /src
        COPY . .
        RUN dotnet publish {project}/{project}.csproj -c Release -o /app --no-self-contained

        FROM mcr.microsoft.com/dotnet/aspnet:10.0
        WORKDIR /app
        COPY --from=build /app .
        # The non-root user the base image provides; the pod also runs with a read-only root filesystem.
        USER $APP_UID
        ENV DOTNET_gcServer=0 ASPNETCORE_URLS= PORT={port}
        EXPOSE {port}{(second is int s ? $" {s}" : "")}
        ENTRYPOINT ["dotnet", "{project}.dll"]

        """;
}
