# Shared by the bench scripts; source it after scripts/lib/install.sh. `bench_init NAME` makes the work folder
# ($work, /tmp/claudeproxy-NAME-*, removed at exit unless KEEP_BENCH is set) and stops every process in $pids at exit.

bench_init() {
  work=$(mktemp -d "/tmp/claudeproxy-$1-XXXXXX")
  chmod 755 "$work"
  pids=()
  pgbin=$(pg_bin_dir)
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_BENCH:-}" ] || rm -rf "$work"
}

# A loopback port nothing listens on.
free_port() {
  local port
  while :; do
    port=$(shuf -i 20000-60000 -n 1)
    ss -ltn "sport = :$port" | grep -q LISTEN || { echo "$port"; return; }
  done
}

# wait_http CURL-ARGS...: until the URL answers 2xx, 30 s at most.
wait_http() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$@" && return 0; sleep 0.1; done; echo "not ready: $*" >&2; return 1; }

# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }

random_secret() { echo "bench-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }

# bench_needs redis postgres wrk curl ...: .NET and each of these, installed when missing.
bench_needs() {
  ensure_dotnet
  local tool
  for tool in "$@"; do
    case $tool in
      redis) ensure_redis ;;
      postgres) ensure_postgres ;;
      *) command -v "$tool" >/dev/null 2>&1 || apt_install "$tool" ;;
    esac
  done
}

# bench_servers: redis-server and PostgreSQL started as the tests start them (ClaudeProxy.Tests/Infrastructure), on free
# loopback ports; sets redis_port and pg_port, and stops both at exit.
bench_servers() {
  dotnet "$root/bench/ClaudeProxy.Benchmarks/bin/Release/net10.0/ClaudeProxy.Benchmarks.dll" servers "$work/servers.env" >"$work/servers.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do [ -f "$work/servers.env" ] && break; sleep 0.1; done
  [ -f "$work/servers.env" ] || { cat "$work/servers.log" >&2; echo "Redis and PostgreSQL did not start" >&2; exit 1; }
  # shellcheck disable=SC1091
  source "$work/servers.env"
}
