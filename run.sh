#!/usr/bin/env bash
# Runs the whole system: installs what is missing (redis-server, PostgreSQL), builds, and starts the AppHost, which
# starts Redis, PostgreSQL, the gateway (and the Anthropic simulator when ANTHROPIC_API_KEY is not set) and the admin
# app, on http://localhost:3001 (proxy), :3002 (management API) and :3003 (admin app). Ctrl-C stops everything.
# Options are the AppHost's: --gateways N, --data-dir DIR; "publish --output deploy/k8s" writes the manifests.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/lib/install.sh
ensure_dotnet
ensure_redis
ensure_postgres

echo "==> building"
dotnet build ClaudeProxy.sln -c Release -nologo -v quiet
exec dotnet run --project ClaudeProxy.AppHost -c Release --no-build -- "$@"
