#!/usr/bin/env bash
# Runs the whole system under Aspire: installs what is missing (redis-server, PostgreSQL, the Aspire CLI as a local
# tool), builds, and runs the AppHost, which starts Redis, PostgreSQL, the migrations, the gateway (and the Anthropic
# simulator when ANTHROPIC_API_KEY is not set) and the admin app on http://localhost:3001 (proxy), :3002 (management
# API) and :3003 (admin app), with Aspire's dashboard on http://localhost:18888 (the login link is printed). Without
# OIDC_AUTHORITY, the development identity provider (NOT FOR PRODUCTION) runs on :3004 for sign-in.
# Ctrl-C stops everything. Settings are the AppHost's: --Gateways N, --DataDir DIR.
# "./run.sh publish" writes the Kubernetes base deploy/k8s/base (with aspire-manifest.json) from the application model instead.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/lib/install.sh
ensure_dotnet
ensure_redis
ensure_postgres
dotnet tool restore >/dev/null

echo "==> building"
dotnet build ClaudeProxy.sln -c Release -nologo -v quiet
apphost=ClaudeProxy.AppHost/bin/Release/net10.0/ClaudeProxy.AppHost
if [ "${1:-}" = publish ]; then
  shift
  exec "$apphost" --operation publish --step publish --output-path "$(pwd)/deploy/k8s/base" "$@"
fi
# What the AppHost's "http" launch profile sets (aspire run uses it); exec, so that Ctrl-C and SIGTERM reach the AppHost,
# which has DCP stop every resource.
export ASPNETCORE_ENVIRONMENT=${ASPNETCORE_ENVIRONMENT:-Development} DOTNET_ENVIRONMENT=${DOTNET_ENVIRONMENT:-Development}
export ASPNETCORE_URLS=${ASPNETCORE_URLS:-http://localhost:18888}
export ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL=${ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL:-http://localhost:18889}
export ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL=${ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL:-http://localhost:18890}
export ASPIRE_ALLOW_UNSECURED_TRANSPORT=${ASPIRE_ALLOW_UNSECURED_TRANSPORT:-true}
exec "$apphost" "$@"
