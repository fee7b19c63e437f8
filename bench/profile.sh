#!/usr/bin/env bash
# Where a request's time goes: starts Redis, PostgreSQL, the Anthropic simulator and one gateway (every feature on, as
# in bench/run.sh; TARGET=local for limits and usage log in process), then for S1 (1 connection) and S2 (64):
#  - the gateway's CPU and allocations per request (from /proc and its own dotnet.gc.heap.total_allocated counter),
#    Redis's and PostgreSQL's CPU per request, and Redis's cost per script call (INFO commandstats, SLOWLOG);
#  - a CPU trace of the gateway (dotnet-trace, cpu-sampling) under that load, summarised by `dotnet-trace report topN`.
# Output: bench/profile-results.md (PROFILE_OUT to change), and the traces in $work when KEEP_BENCH=1.
# Settings: TARGET (gateway|local|bare: YARP's forwarder alone, the floor), DURATION seconds per measured run (default 10), TRACE_SECONDS (default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib/install.sh
source bench/lib.sh
bench_needs redis postgres wrk curl
dotnet tool restore >/dev/null

TARGET=${TARGET:-gateway}
# CHECKOUT: the gateway of another checkout, built in Release (an earlier commit, to compare); the tools are this one's.
CHECKOUT=${CHECKOUT:-$root}
DURATION=${DURATION:-10}
TRACE_SECONDS=${TRACE_SECONDS:-8}
out=${PROFILE_OUT:-bench/profile-results.md}

echo "==> building Release"
dotnet build ClaudeProxy.sln -c Release -nologo -v quiet

bench_init profile

bench_servers
"$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres claudeproxydb

simkey="sk-sim-profile-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
sim_port=$(free_port)
dotnet "$root/ClaudeProxy.AnthropicSimulator/bin/Release/net10.0/ClaudeProxy.AnthropicSimulator.dll" --urls "http://127.0.0.1:$sim_port" \
  --api-key "$simkey" --record false >"$work/sim.log" 2>&1 &
pids+=($!)
gw_port=$(free_port); gw_manage=$(free_port)
backing=()
if [ "$TARGET" = gateway ]; then
  backing=(REDIS_URL="redis://127.0.0.1:$redis_port" DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/claudeproxydb")
fi
if [ "$TARGET" = bare ]; then
  dotnet "$root/bench/ClaudeProxy.Benchmarks/bin/Release/net10.0/ClaudeProxy.Benchmarks.dll" forwarder "http://127.0.0.1:$gw_port" \
    "http://127.0.0.1:$sim_port" >"$work/gateway.log" 2>&1 &
  gw_pid=$!
  pids+=($gw_pid)
  wait_http "http://127.0.0.1:$gw_port/v1/models" -H "x-api-key: $simkey"
  token="" key=$simkey
else
  # GATEWAY_ENV: extra NAME=VALUE pairs for the gateway alone (runtime knobs to try, e.g. DOTNET_gcServer=1).
  # shellcheck disable=SC2086
  env ${GATEWAY_ENV:-} ANTHROPIC_API_KEY="$simkey" ANTHROPIC_BASE_URL="http://127.0.0.1:$sim_port" \
    JWT_SECRET="profile-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" ADMIN_API_KEY="profile-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    HOST=127.0.0.1 PORT="$gw_port" MANAGEMENT_PORT="$gw_manage" "${backing[@]}" \
    RATE_LIMIT_MAX=1000000 RATE_LIMIT_WINDOW=1000 TOKEN_LIMIT_PER_MINUTE=1000000000 DEFAULT_SPEND_CAP=1000000 \
    MAX_CONCURRENT_REQUESTS_PER_DEVICE=10000 USAGE_SPOOL_DIR="$work/spool" LOG_LEVEL=warn \
    dotnet "$CHECKOUT/ClaudeProxy.Gateway/bin/Release/net10.0/ClaudeProxy.Gateway.dll" >"$work/gateway.log" 2>&1 &
  gw_pid=$!
  pids+=($gw_pid)
  wait_http "http://127.0.0.1:$gw_port/readyz"
  token=$(curl -s "http://127.0.0.1:$gw_port/bootstrap" -H 'content-type: application/json' -d '{"device_id":"profile-device"}' \
    | sed 's/.*"wrapper_token":"\([^"]*\)".*/\1/')
  key=""
fi
small="$work/small.json"
printf '%s' '{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}' >"$small"
url="http://127.0.0.1:$gw_port/v1/messages"
wrk_run() { # CONNS SECONDS -> requests
  BENCH_BODY=$small BENCH_TOKEN=$token BENCH_KEY=$key wrk -t"$(( $1 > 1 ? 2 : 1 ))" -c"$1" -d"${2}s" --timeout 30s -s bench/post.lua "$url" \
    | awk '/^BENCH/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["requests"], v["rps"], v["p50_us"], v["p99_us"] }'
}
ticks() { # PID... -> utime+stime of them all, in clock ticks
  local t=0 p
  for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done
  echo "$t"
}
redis_pid=$(pgrep -f "redis-server .*:$redis_port" | head -n1 || true)
[ -n "$redis_pid" ] || redis_pid=$(ss -ltnp "sport = :$redis_port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
pg_pids() { pgrep -f "postgres" | while read -r p; do grep -q "$pg_port" "/proc/$p/cmdline" 2>/dev/null && echo "$p"; pgrep -P "$p"; done | sort -u; }
allocated() { { curl -s "http://127.0.0.1:$gw_manage/metrics" || true; } | awk '/^dotnet_gc_heap_total_allocated_bytes_total/ { print $2 }' | head -n1; }
hz=$(getconf CLK_TCK)

echo "==> warm-up"
wrk_run 8 5 >/dev/null
sleep 1

measure() { # NAME CONNS
  local name=$1 conns=$2 g0 r0 p0 a0 g1 r1 p1 a1 res
  redis-cli -p "$redis_port" CONFIG RESETSTAT >/dev/null
  redis-cli -p "$redis_port" SLOWLOG RESET >/dev/null
  g0=$(ticks "$gw_pid"); r0=$(ticks "$redis_pid"); p0=$(ticks $(pg_pids)); a0=$(allocated)
  res=$(wrk_run "$conns" "$DURATION")
  sleep 0.5   # the usage writer's last batch of the run
  g1=$(ticks "$gw_pid"); r1=$(ticks "$redis_pid"); p1=$(ticks $(pg_pids)); a1=$(allocated)
  read -r n rps p50 p99 <<<"$res"
  awk -v name="$name" -v n="$n" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v g=$((g1 - g0)) -v r=$((r1 - r0)) -v p=$((p1 - p0)) \
    -v a="$(awk -v x="$a0" -v y="$a1" 'BEGIN { print y - x }')" -v hz="$hz" 'BEGIN {
      printf "| %s | %d | %.0f | %.3f | %.3f | %.1f | %.1f | %.1f | %.0f |\n", name, n, rps, p50 / 1000, p99 / 1000,
        1e6 * g / hz / n, 1e6 * r / hz / n, 1e6 * p / hz / n, a / n }'
  redis-cli -p "$redis_port" INFO commandstats | tr -d '\r' | grep -E '^cmdstat_(evalsha|eval):' >"$work/$name.cmdstats" || true
  redis-cli -p "$redis_port" SLOWLOG GET 5 >"$work/$name.slowlog" || true
}

echo "==> measuring S1 and S2"
s1=$(measure S1 1)
s2=$(measure S2 64)
memory=$(awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %.0f MB, ", $1, $2 / 1024 }' "/proc/$gw_pid/status")
gc_heap=$({ curl -s "http://127.0.0.1:$gw_manage/metrics" || true; } | awk '/^dotnet_gc_last_collection_heap_size_bytes/ { s += $2 } END { printf "%.0f MB", s / 1048576 }')
# What the managed heap holds after S2, by type (a gcdump forces a full collection first).
dotnet dotnet-gcdump collect -p "$gw_pid" -o "$work/heap.gcdump" >"$work/gcdump.log" 2>&1 || cat "$work/gcdump.log" >&2
dotnet dotnet-gcdump report "$work/heap.gcdump" 2>/dev/null | head -n 28 >"$work/heap.txt" || true

trace() { # NAME CONNS
  ( wrk_run "$2" $(( TRACE_SECONDS + 4 )) >/dev/null ) &
  local w=$!
  sleep 2
  # Kernel CPU samples (perf_events) with .NET stacks: only the time on a CPU, not the time waiting.
  dotnet dotnet-trace collect-linux -p "$gw_pid" --profile cpu-sampling --duration "00:00:$(printf '%02d' "$TRACE_SECONDS")" \
    -o "$work/$1.nettrace" >"$work/$1.trace.log" 2>&1 || cat "$work/$1.trace.log" >&2
  wait "$w"
  dotnet dotnet-trace report "$work/$1.nettrace" topN -n 40 --inclusive >"$work/$1.inclusive.txt" 2>&1 || true
  dotnet dotnet-trace report "$work/$1.nettrace" topN -n 40 >"$work/$1.exclusive.txt" 2>&1 || true
}
received() { curl -s "http://127.0.0.1:$sim_port/_sim/stats" | sed 's/.*"received":\([0-9]*\).*/\1/'; }
allocations() { # CONNS: where S2's allocations come from (sampled every ~100 KB, with stacks)
  ( wrk_run "$1" $(( TRACE_SECONDS + 4 )) >/dev/null ) &
  local w=$! n0 n1
  sleep 2
  n0=$(received)
  dotnet dotnet-trace collect -p "$gw_pid" --profile gc-verbose --duration "00:00:$(printf '%02d' "$TRACE_SECONDS")" \
    -o "$work/alloc.nettrace" >"$work/alloc.trace.log" 2>&1 || cat "$work/alloc.trace.log" >&2
  n1=$(received)
  wait "$w"
  dotnet "$root/bench/ClaudeProxy.Benchmarks/bin/Release/net10.0/ClaudeProxy.Benchmarks.dll" allocations "$work/alloc.nettrace" $(( n1 - n0 )) 30 \
    >"$work/alloc.txt" 2>&1 || true
}
echo "==> tracing S1 and S2"
trace S1 1
trace S2 64
allocations 64

# Steps of a request in S2's CPU trace: each step's frames' inclusive share of the gateway's CPU samples (the largest
# of a method's frames: an async method's resumptions each carry the same name), times its CPU per request.
s2_cpu=$(awk -F'|' '/^\| S2 \|/ { gsub(/ /, "", $7); print $7 }' <<<"$s2")
dotnet dotnet-trace report "$work/S2.nettrace" topN -n 5000 --inclusive >"$work/S2.all.txt" 2>/dev/null || true
step_row() { # NAME PATTERN
  awk -v name="$1" -v pat="$2" -v cpu="$s2_cpu" '
    index($0, pat) { for (i = 1; i <= NF; i++) if ($i ~ /%$/) { v = $i + 0; if (v > best) best = v; break } }
    END { printf "| %s | %.1f %% | %.1f µs |\n", name, best, best * cpu / 100 }' "$work/S2.all.txt"
}
steps=$(
  step_row "authenticate (token cache, else JWT validation)" "Tokens.DeviceAuthenticator+<AuthenticateTokenAsync>"
  step_row "read and scan the body" "Forwarding.RequestBody+<ReadAsync>"
  step_row "admission: limits, caps, standing (Redis client included)" "Limits.AdmissionService+<AdmitAsync>"
  step_row "of which the Redis script call" "Redis.RedisDatabase+<ScriptEvaluateAsync>"
  step_row "forward to Anthropic and stream back (YARP, HttpClient, breaker)" "Forwarder.HttpForwarder+<SendAsync>"
  step_row "of which the circuit breaker's pipeline (Polly)" "Forwarding.CircuitBreakerHandler+<SendAsync>"
  step_row "usage tap (parse the answer as it passes)" "Usage.UsageTapStream+<WriteAsync>"
  step_row "usage writer (background: binary COPY and merge)" "Usage.UsageWriter+<InsertAsync>"
  step_row "Kestrel: parse the request" "Http.Http1Connection::TryParseRequest"
  step_row "the whole request handler (ProxyHandler)" "Forwarding.ProxyHandler+<HandleAsync>"
  step_row "the kernel (system calls, scheduling)" "vmlinux!entry_SYSCALL_64_after_hwframe"
)

{
  echo "# Where a request's time goes ($TARGET)"
  echo
  echo "Written by \`bench/profile.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') at $(git -C "$CHECKOUT" log -1 --format=%h)$([ "$CHECKOUT" = "$root" ] || echo " (the gateway of $CHECKOUT)")$(git diff --quiet HEAD -- ClaudeProxy.Gateway 2>/dev/null || [ "$CHECKOUT" != "$root" ] || echo " with uncommitted changes"). CPU per request is each process's user and"
  echo "system time over the run divided by the requests served; allocations are the gateway's own count."
  echo
  echo "| scenario | requests | requests/s | p50 ms | p99 ms | gateway CPU µs/request | Redis CPU µs/request | PostgreSQL CPU µs/request | gateway bytes allocated/request |"
  echo "|---|---|---|---|---|---|---|---|---|"
  echo "$s1"
  echo "$s2"
  echo
  echo "Gateway memory after S2: ${memory}GC heap after the last collection $gc_heap.${GATEWAY_ENV:+ Gateway environment: \`$GATEWAY_ENV\`.}"
  echo
  echo "Steps of a request in S2 (share of the gateway's CPU samples, inclusive, times its $s2_cpu µs of CPU per request;"
  echo "steps overlap where one calls another):"
  echo
  echo "| step | share of CPU | per request |"
  echo "|---|---|---|"
  echo "$steps"
  echo
  echo "Managed heap after S2 (dotnet-gcdump, live objects after a full collection):"
  echo
  echo '```'
  cat "$work/heap.txt"
  echo '```'
  echo
  echo "## Allocations under S2 (dotnet-trace gc-verbose)"
  echo
  cat "$work/alloc.txt"
  for s in S1 S2; do
    echo
    echo "## $s"
    echo
    echo "Redis scripts (INFO commandstats):"
    echo
    echo '```'
    cat "$work/$s.cmdstats" 2>/dev/null || true
    echo '```'
    echo
    echo "Gateway CPU, inclusive (dotnet-trace report topN --inclusive):"
    echo
    echo '```'
    cat "$work/$s.inclusive.txt"
    echo '```'
    echo
    echo "Gateway CPU, exclusive:"
    echo
    echo '```'
    cat "$work/$s.exclusive.txt"
    echo '```'
  done
} >"$out"
echo "==> wrote $out"
