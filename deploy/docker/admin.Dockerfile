# Build from the repository root: docker build -f deploy/docker/admin.Dockerfile .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish ClaudeProxy.Admin/ClaudeProxy.Admin.csproj -c Release -o /app --no-self-contained

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# The non-root user the base image provides; the pod also runs with a read-only root filesystem.
USER $APP_UID
ENV DOTNET_gcServer=0 ASPNETCORE_URLS= PORT=3003
EXPOSE 3003
ENTRYPOINT ["dotnet", "ClaudeProxy.Admin.dll"]
