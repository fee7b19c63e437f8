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

ensure_test_prerequisites() {
  ensure_dotnet && ensure_redis && ensure_postgres && ensure_chromium && ensure_helper_tools
}
