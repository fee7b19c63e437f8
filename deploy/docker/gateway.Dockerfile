# syntax=docker/dockerfile:1
# Build from the repository root, for one or several platforms:
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/docker/gateway.Dockerfile -t REGISTRY/claudeproxy-gateway:VERSION .
# The SDK stage runs on the build machine's own platform and cross-compiles (no emulation); only the runtime stage is
# per target platform.
FROM --platform=$BUILDPLATFORM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG TARGETARCH
WORKDIR /src
# Restore from the project files alone: this layer is reused until a project file or a package version changes.
COPY Directory.Build.props Directory.Packages.props .editorconfig ./
COPY ClaudeProxy.ServiceDefaults/ClaudeProxy.ServiceDefaults.csproj ClaudeProxy.ServiceDefaults/
COPY ClaudeProxy.Contracts/ClaudeProxy.Contracts.csproj ClaudeProxy.Contracts/
COPY ClaudeProxy.Data/ClaudeProxy.Data.csproj ClaudeProxy.Data/
COPY ClaudeProxy.Gateway/ClaudeProxy.Gateway.csproj ClaudeProxy.Gateway/
RUN dotnet restore ClaudeProxy.Gateway/ClaudeProxy.Gateway.csproj -a $TARGETARCH
COPY ClaudeProxy.ServiceDefaults/ ClaudeProxy.ServiceDefaults/
COPY ClaudeProxy.Contracts/ ClaudeProxy.Contracts/
COPY ClaudeProxy.Data/ ClaudeProxy.Data/
COPY ClaudeProxy.Gateway/ ClaudeProxy.Gateway/
RUN dotnet publish ClaudeProxy.Gateway/ClaudeProxy.Gateway.csproj -c Release -a $TARGETARCH --no-restore --no-self-contained -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# The non-root user the base image provides; the pod also runs with a read-only root filesystem.
USER $APP_UID
ENV DOTNET_gcServer=0 ASPNETCORE_URLS= PORT=3001
EXPOSE 3001 3002
ENTRYPOINT ["dotnet", "ClaudeProxy.Gateway.dll"]
