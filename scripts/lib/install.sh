# Installs, when missing, the machine's tools the scripts use. Sourced by run.sh, test.sh and bench/run.sh.

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

_apt_updated=0
apt_install() {
  if [ "$_apt_updated" -eq 0 ]; then
    echo "==> apt-get update"
    as_root apt-get update -qq || return 1
    _apt_updated=1
  fi
  echo "==> apt-get install $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null || return 1
}

pg_bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

ensure_dotnet() {
  command -v dotnet >/dev/null 2>&1 || { echo "the .NET 10 SDK is required (dotnet on PATH)" >&2; return 1; }
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
}

ensure_postgres() {
  pg_bin_dir >/dev/null || apt_install postgresql
}

ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium fonts-dejavu-core
}

# The token helper's tools (scripts/claude-token-helper, and the tests that run it).
ensure_helper_tools() {
  { command -v openssl >/dev/null 2>&1 || apt_install openssl; } &&
    { command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates; }
}

# A terminal for the tests that drive Claude Code's interactive session (send-keys, capture-pane).
ensure_tmux() {
  command -v tmux >/dev/null 2>&1 || apt_install tmux
}

ensure_test_prerequisites() {
  ensure_dotnet && ensure_redis && ensure_postgres && ensure_chromium && ensure_helper_tools && ensure_tmux && ensure_claude_code
}

# Claude Code's CLI (npm @anthropic-ai/claude-code, pinned) in .tools/claude-code, for the tests that run `claude -p`
# through the AppHost and `claude auth login --gateway-json` through the gateway's sign-in. npm asks for Node.js 22
# and warns on older ones; the package's bin/claude.exe is a native binary that runs whatever Node.js installed it.
CLAUDE_CODE_VERSION=2.1.328
ensure_claude_code() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.tools/claude-code"
  [ -x "$dir/node_modules/.bin/claude" ] && grep -q "\"version\": \"$CLAUDE_CODE_VERSION\"" "$dir/node_modules/@anthropic-ai/claude-code/package.json" 2>/dev/null && return 0
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm || return 1
  echo "==> npm install @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null || return 1
}
