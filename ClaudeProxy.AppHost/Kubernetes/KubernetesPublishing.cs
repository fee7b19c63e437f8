namespace ClaudeProxy.AppHost.Kubernetes;

public static class KubernetesPublishing
{
    public static IDistributedApplicationBuilder AddKubernetesPublishing(this IDistributedApplicationBuilder builder) => builder;
}
