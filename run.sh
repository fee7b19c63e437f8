#!/usr/bin/env bash
# Runs the gateway on http://localhost:3001. With ANTHROPIC_API_KEY set it forwards to the real Anthropic API;
# without it, it starts the Anthropic simulator and says so. Secrets it generates are kept in .run/secrets.env.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/lib/install.sh
ensure_dotnet

mkdir -p .run && chmod 700 .run
secrets=.run/secrets.env
if [ ! -f "$secrets" ]; then
  umask 077
  {
    echo "JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
    echo "SIMULATOR_API_KEY=sk-sim-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  } >"$secrets"
  echo "Generated secrets in $secrets (owner-only)."
fi
set -a; source "$secrets"; set +a

echo "==> building"
dotnet build ClaudeProxy.sln -c Release -nologo -v quiet

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [ -z "${ANTHROPIC_API_KEY:-}" ]; then
  export ANTHROPIC_API_KEY="$SIMULATOR_API_KEY"
  export ANTHROPIC_BASE_URL="http://127.0.0.1:${SIMULATOR_PORT:-3009}"
  dotnet ClaudeProxy.AnthropicSimulator/bin/Release/net10.0/ClaudeProxy.AnthropicSimulator.dll \
    --urls "$ANTHROPIC_BASE_URL" --api-key "$SIMULATOR_API_KEY" &
  pids+=($!)
  echo "*** ANTHROPIC_API_KEY is not set: answers come from the Anthropic SIMULATOR at $ANTHROPIC_BASE_URL, not from Claude. ***"
fi

export PORT="${PORT:-3001}"
cat <<MSG
Gateway: http://localhost:$PORT
  Get a token:  curl -s localhost:$PORT/bootstrap -H 'content-type: application/json' -d '{"device_id":"my-laptop"}'
  Claude Code:  ANTHROPIC_BASE_URL=http://localhost:$PORT ANTHROPIC_AUTH_TOKEN=<wrapper_token> claude
MSG
dotnet ClaudeProxy.Gateway/bin/Release/net10.0/ClaudeProxy.Gateway.dll &
pids+=($!)
wait "${pids[-1]}"
