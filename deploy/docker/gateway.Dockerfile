# Build from the repository root: docker build -f deploy/docker/gateway.Dockerfile .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish ClaudeProxy.Gateway/ClaudeProxy.Gateway.csproj -c Release -o /app --no-self-contained

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# The non-root user the base image provides; the pod also runs with a read-only root filesystem.
USER $APP_UID
ENV DOTNET_gcServer=0 ASPNETCORE_URLS= PORT=3001
EXPOSE 3001 3002
ENTRYPOINT ["dotnet", "ClaudeProxy.Gateway.dll"]
