#!/usr/bin/env bash
# The load benchmark: each scenario straight against the Anthropic simulator and through the gateway with every
# feature on (JWT auth, Redis rate limit + token budget + spend reservation, usage tap, Postgres usage writer,
# info-level request logs), alternating, for ROUNDS rounds; medians go to bench/results.md. Then it checks that
# Postgres holds exactly one usage row per request the gateway forwarded.
# A third target, YARP's forwarder alone (bench/ClaudeProxy.Benchmarks forwarder), shows the floor any gateway built
# on it starts from. Afterwards the BenchmarkDotNet micro-benchmarks of the hot path's pieces run (MICRO=0 skips them).
# Settings: ROUNDS (default 3), DURATION seconds per wrk run (default 8), STREAMS for S3 (default 200),
# BENCH_LOG_LEVEL (default warn: the per-request info line is the console logger's cost, not the gateway's),
# BASELINE: the folder of another checkout, built in Release (for example an earlier commit: git worktree add /tmp/before
# REV && (cd /tmp/before && dotnet build ClaudeProxy.sln -c Release)); its full gateway runs beside this one, on the
# same Redis and its own database, through the same rounds, and results.md gets a before-and-after table.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib/install.sh
source bench/lib.sh
bench_needs redis postgres wrk curl python3

ROUNDS=${ROUNDS:-3}
BASELINE=${BASELINE:-}
MICRO=${MICRO:-1}
DURATION=${DURATION:-8}
STREAMS=${STREAMS:-200}

echo "==> building Release"
dotnet build ClaudeProxy.sln -c Release -nologo -v quiet

bench_init bench

echo "==> starting Redis, PostgreSQL, two simulators (direct and upstream) and the gateway"
# The same starters the tests use (ClaudeProxy.Tests/Infrastructure/RedisServer.cs and PostgresServer.cs).
bench_servers
"$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres claudeproxydb

simkey="sk-sim-bench-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
sim_direct=$(free_port)
sim_upstream=$(free_port)
sim="$root/ClaudeProxy.AnthropicSimulator/bin/Release/net10.0/ClaudeProxy.AnthropicSimulator.dll"
dotnet "$sim" --urls "http://127.0.0.1:$sim_direct" --api-key "$simkey" --record false >"$work/sim-direct.log" 2>&1 &
pids+=($!)
sim_direct_pid=$!
dotnet "$sim" --urls "http://127.0.0.1:$sim_upstream" --api-key "$simkey" --record false >"$work/sim-upstream.log" 2>&1 &
pids+=($!)

bare_port=$(free_port)
dotnet "$root/bench/ClaudeProxy.Benchmarks/bin/Release/net10.0/ClaudeProxy.Benchmarks.dll" forwarder "http://127.0.0.1:$bare_port" \
  "http://127.0.0.1:$sim_direct" >"$work/bare.log" 2>&1 &
pids+=($!)
bare_pid=$!

# The development identity provider, for a signed-in person's token (compared with a device's in S1 and S2).
idp_port=$(free_port)
idp_secret=$(random_secret)
env DevIdentity__Clients__0__ClientId=claudeproxy-bench DevIdentity__Clients__0__ClientSecret="$idp_secret" \
  DevIdentity__Clients__0__AllowLoopbackRedirectUris=true \
  dotnet "$root/ClaudeProxy.DevIdentity/bin/Release/net10.0/ClaudeProxy.DevIdentity.dll" --urls "http://127.0.0.1:$idp_port" >"$work/idp.log" 2>&1 &
pids+=($!)
admin_key=$(random_secret)
# full_gateway CHECKOUT PORT DATABASE UPSTREAM_PORT NAME [MANAGEMENT_PORT]: a gateway with every feature on, in the background.
full_gateway() {
  env ANTHROPIC_API_KEY="$simkey" ANTHROPIC_BASE_URL="http://127.0.0.1:$4" \
    JWT_SECRET="$(random_secret)" ADMIN_API_KEY="$admin_key" \
    HOST=127.0.0.1 PORT="$2" MANAGEMENT_PORT="${6:-$(free_port)}" \
    REDIS_URL="redis://127.0.0.1:$redis_port" DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$3" \
    RATE_LIMIT_MAX=1000000 RATE_LIMIT_WINDOW=1000 TOKEN_LIMIT_PER_MINUTE=1000000000 DEFAULT_SPEND_CAP=1000000 \
    MAX_CONCURRENT_REQUESTS_PER_DEVICE=10000 USAGE_SPOOL_DIR="$work/spool-$5" LOG_LEVEL=${BENCH_LOG_LEVEL:-warn} \
    OIDC_AUTHORITY="http://127.0.0.1:$idp_port/" OIDC_CLIENT_ID=claudeproxy-bench OIDC_CLIENT_SECRET="$idp_secret" \
    dotnet "$1/ClaudeProxy.Gateway/bin/Release/net10.0/ClaudeProxy.Gateway.dll" >"$work/$5.log" 2>&1 &
}
gw_port=$(free_port)
gw_manage=$(free_port)
full_gateway "$root" "$gw_port" claudeproxydb "$sim_upstream" gateway "$gw_manage"
gw_pid=$!
pids+=($gw_pid)
targets="direct bare local gateway"
if [ -n "$BASELINE" ]; then
  "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres claudeproxydb_baseline
  baseline_port=$(free_port)
  baseline_manage=$(free_port)
  full_gateway "$BASELINE" "$baseline_port" claudeproxydb_baseline "$sim_direct" baseline "$baseline_manage"
  pids+=($!)
  baseline_pid=$!
  targets="$targets baseline"
fi
# The same gateway with its limits and usage log in process (no REDIS_URL, no DATABASE_URL): the difference to the
# full gateway is what the shared limits in Redis and the Postgres writer cost per request.
local_port=$(free_port)
local_manage=$(free_port)
env ANTHROPIC_API_KEY="$simkey" ANTHROPIC_BASE_URL="http://127.0.0.1:$sim_direct" \
  JWT_SECRET="$(random_secret)" \
  HOST=127.0.0.1 PORT="$local_port" MANAGEMENT_PORT="$local_manage" \
  RATE_LIMIT_MAX=1000000 RATE_LIMIT_WINDOW=1000 TOKEN_LIMIT_PER_MINUTE=1000000000 DEFAULT_SPEND_CAP=1000000 \
  MAX_CONCURRENT_REQUESTS_PER_DEVICE=10000 \
  LOG_LEVEL=${BENCH_LOG_LEVEL:-warn} \
  dotnet "$root/ClaudeProxy.Gateway/bin/Release/net10.0/ClaudeProxy.Gateway.dll" >"$work/gateway-local.log" 2>&1 &
pids+=($!)
local_pid=$!
# /_sim/stats is not an API route: probing it leaves the count of forwarded requests untouched.
wait_http "http://127.0.0.1:$sim_direct/_sim/stats"
wait_http "http://127.0.0.1:$sim_upstream/_sim/stats"
wait_http "http://127.0.0.1:$gw_port/readyz"
wait_http "http://127.0.0.1:$bare_port/v1/models" -H "x-api-key: $simkey"
wait_http "http://127.0.0.1:$local_port/readyz"
if [ -n "$BASELINE" ]; then
  wait_http "http://127.0.0.1:$baseline_port/readyz"
  baseline_token=$(curl -s "http://127.0.0.1:$baseline_port/bootstrap" -H 'content-type: application/json' -d '{"device_id":"bench-baseline"}' \
    | sed 's/.*"wrapper_token":"\([^"]*\)".*/\1/')
fi
rss_start=$(awk '/VmRSS/ {print $2}' "/proc/$gw_pid/status")
token=$(curl -s "http://127.0.0.1:$gw_port/bootstrap" -H 'content-type: application/json' -d '{"device_id":"bench-device"}' \
  | sed 's/.*"wrapper_token":"\([^"]*\)".*/\1/')
wait_http "http://127.0.0.1:$idp_port/.well-known/openid-configuration"
person_token=$(python3 bench/sign-in.py "http://127.0.0.1:$gw_port" alice@example.com dev-password)
# The person is under three spend caps, each reserved in the one admission round trip: their own spend limit, the pool
# of their provider group (engineering) and the organisation's limit.
manage() { curl -sf "http://127.0.0.1:$gw_manage$1" -H "x-api-key: $admin_key" -H 'content-type: application/json' "${@:2}"; }
group_id=$(manage /manage/v1/groups -d '{"name":"engineering","source":"idp"}' | sed 's/.*"group_id":"\([^"]*\)".*/\1/')
user_id=$(manage '/manage/v1/users?search=alice' | sed 's/.*"user_id":"\(usr_[a-z0-9]*\)".*/\1/')
manage /v1/organizations/spend_limits -d '{"scope":{"type":"user","user_id":"'"$user_id"'"},"amount":"100000000000","period":"monthly"}' >/dev/null
manage /v1/organizations/spend_limits -d '{"scope":{"type":"rbac_group","rbac_group_id":"'"$group_id"'"},"amount":"100000000000","period":"monthly","pooled_budget":true}' >/dev/null
manage /v1/organizations/spend_limits -d '{"scope":{"type":"organization"},"amount":"100000000000","period":"monthly"}' >/dev/null
caps=$(manage "/manage/v1/users/$user_id/policy" | grep -o '"kind":"[a-z_]*"' | sed 's/"kind":"\(.*\)"/\1/' | sort -u | paste -sd, -)
echo "==> the signed-in person's caps: $caps"
local_token=$(curl -s "http://127.0.0.1:$local_port/bootstrap" -H 'content-type: application/json' -d '{"device_id":"bench-device"}' \
  | sed 's/.*"wrapper_token":"\([^"]*\)".*/\1/')

small="$work/small.json"; big="$work/big.json"; stream="$work/stream.json"
printf '%s' '{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}' >"$small"
printf '%s' '{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}' >"$stream"
{ printf '%s' '{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"system":[{"type":"text","text":"'
  head -c 102400 /dev/zero | tr '\0' 'x'
  printf '%s' '"}],"messages":[{"role":"user","content":"Hi"}]}'; } >"$big"

direct_url="http://127.0.0.1:$sim_direct/v1/messages"
gateway_url="http://127.0.0.1:$gw_port/v1/messages"
bare_url="http://127.0.0.1:$bare_port/v1/messages"
local_url="http://127.0.0.1:$local_port/v1/messages"
baseline_url="http://127.0.0.1:${baseline_port:-0}/v1/messages"

# wrk_run TARGET(direct|bare|local|gateway) THREADS CONNS BODY [HEADER] -> "rps p50_us p99_us"
wrk_run() {
  local target=$1 threads=$2 conns=$3 body=$4 header=${5:-} url key tok
  case $target in
    direct) url=$direct_url key=$simkey tok="" ;;
    bare) url=$bare_url key=$simkey tok="" ;;
    local) url=$local_url key="" tok=$local_token ;;
    baseline) url=$baseline_url key="" tok=$baseline_token ;;
    person) url=$gateway_url key="" tok=$person_token ;;
    *) url=$gateway_url key="" tok=$token ;;
  esac
  BENCH_BODY=$body BENCH_KEY=$key BENCH_TOKEN=$tok BENCH_HEADER=$header \
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 30s -s bench/post.lua "$url" | awk '/^BENCH/ {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print v["rps"], v["p50_us"], v["p99_us"], v["non2xx"], v["requests"] }'
}

# curl_streams TARGET -> lines "ttfb_ms ttlb_ms"
curl_streams() {
  local target=$1 url auth
  case $target in
    direct) url=$direct_url auth="x-api-key: $simkey" ;;
    bare) url=$bare_url auth="x-api-key: $simkey" ;;
    local) url=$local_url auth="authorization: Bearer $local_token" ;;
    baseline) url=$baseline_url auth="authorization: Bearer $baseline_token" ;;
    *) url=$gateway_url auth="authorization: Bearer $token" ;;
  esac
  # One curl for all the streams, so they share one kept-alive connection as Claude Code's requests do.
  local urls=()
  for _ in $(seq 1 "$STREAMS"); do urls+=(-o /dev/null "$url"); done
  curl -s -H "$auth" -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H 'x-sim-events: 50' \
    --data-binary "@$stream" -w '%{time_starttransfer} %{time_total} %{num_connects}\n' "${urls[@]}" \
    | awk '{ printf "%.3f %.3f\n", $1 * 1000, $2 * 1000 }'
}

declare -A R
add() { R[$1]="${R[$1]:-} $2"; }
med() { tr ' ' '\n' <<<"${R[$1]:-}" | grep -v '^$' | median; }

# redis_per_request TOKEN N -> "scripts commands": per request over N sequential ones, the scripts the gateway sent to
# Redis (its round trips: EVAL or EVALSHA) and every command Redis ran, those inside the scripts included.
redis_counts() {
  redis-cli -p "$redis_port" INFO all | tr -d '\r' | awk -F'[:=,]' '
    /^cmdstat_(eval|evalsha):/ { scripts += $3 } /^total_commands_processed:/ { commands = $2 } END { print scripts + 0, commands + 0 }'
}
redis_per_request() {
  local before after
  before=$(redis_counts)
  for _ in $(seq 1 "$2"); do
    curl -s -o /dev/null -H "authorization: Bearer $1" -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
      --data-binary "@$small" "$gateway_url"
  done
  after=$(redis_counts)
  awk -v a="$before" -v b="$after" -v n="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f %.2f\n", (y[1] - x[1]) / n, (y[2] - x[2]) / n }'
}

# CPU per request: each process's user + system time (/proc/PID/stat) over a run, divided by the requests served; "all"
# is the whole machine's busy time (/proc/stat), wrk and the simulators included.
ticks() { local t=0 p; for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo "$t"; }
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
redis_pid=$(ss -ltnp "sport = :$redis_port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
pg_pids() { local m; m=$(ss -ltnp "sport = :$pg_port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1); echo "$m"; pgrep -P "$m"; }
allocated() { { curl -s "http://127.0.0.1:$1/metrics" || true; } | awk '/^dotnet_gc_heap_total_allocated_bytes_total/ { print $2 }' | head -n1; }
hz=$(getconf CLK_TCK)
# s2_measured TARGET: S2 with the CPU of the target's process (and, for the gateway, Redis's and PostgreSQL's) counted.
s2_measured() {
  local target=$1 own manage="" t0 r0 p0 a0 b0 t1 r1 p1 a1 b1 rps p50 p99 n
  case $target in
    direct) own=$sim_direct_pid ;; bare) own=$bare_pid ;; local) own=$local_pid manage=$local_manage ;;
    baseline) own=$baseline_pid manage=$baseline_manage ;; *) own=$gw_pid manage=$gw_manage ;;
  esac
  t0=$(ticks "$own"); r0=$(ticks "$redis_pid"); p0=$(ticks $(pg_pids)); b0=$(busy); a0=${manage:+$(allocated "$manage")}
  read -r rps p50 p99 _ n < <(wrk_run "$target" 2 64 "$small")
  t1=$(ticks "$own"); r1=$(ticks "$redis_pid"); p1=$(ticks $(pg_pids)); b1=$(busy); a1=${manage:+$(allocated "$manage")}
  add "s2.rps.$target" "$rps"; add "s2.p50.$target" "$p50"; add "s2.p99.$target" "$p99"
  add "cpu.own.$target" "$(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$hz" 'BEGIN { printf "%.1f", 1e6 * d / hz / n }')"
  add "cpu.all.$target" "$(awk -v d=$((b1 - b0)) -v n="$n" -v hz="$hz" 'BEGIN { printf "%.1f", 1e6 * d / hz / n }')"
  if [ "$target" = gateway ] || [ "$target" = baseline ]; then
    add "cpu.redis.$target" "$(awk -v d=$((r1 - r0)) -v n="$n" -v hz="$hz" 'BEGIN { printf "%.1f", 1e6 * d / hz / n }')"
    add "cpu.pg.$target" "$(awk -v d=$((p1 - p0)) -v n="$n" -v hz="$hz" 'BEGIN { printf "%.1f", 1e6 * d / hz / n }')"
  fi
  if [ -n "$manage" ]; then
    add "alloc.$target" "$(awk -v a="$a0" -v b="$a1" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / n }')"
  fi
}

echo "==> warm-up"
for target in $targets; do DURATION=3 wrk_run "$target" 1 8 "$small" >/dev/null; done
DURATION=3 wrk_run person 1 8 "$small" >/dev/null
echo "==> Redis commands per request"
read -r scripts_device commands_device < <(redis_per_request "$token" 300)
read -r scripts_person commands_person < <(redis_per_request "$person_token" 300)
# The same counts for a busy device: one connection sending back to back (S1's load), where each settlement can ride
# on the next admission.
redis_busy() {
  local before after n
  before=$(redis_counts)
  read -r _ _ _ _ n < <(DURATION=3 wrk_run "$1" 1 1 "$small")
  after=$(redis_counts)
  awk -v a="$before" -v b="$after" -v n="$n" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f %.2f\n", (y[1] - x[1]) / n, (y[2] - x[2]) / n }'
}
read -r busy_scripts_device busy_commands_device < <(redis_busy gateway)
read -r busy_scripts_person busy_commands_person < <(redis_busy person)

for round in $(seq 1 "$ROUNDS"); do
  echo "==> round $round of $ROUNDS"
  for target in $targets; do
    # Latency first, throughput last: S2's burst of usage rows must not still be draining while S3 or S1 is timed.
    out=$(curl_streams "$target")
    add "s3.ttfb.$target" "$(awk '{print $1}' <<<"$out" | median)"; add "s3.ttlb.$target" "$(awk '{print $2}' <<<"$out" | median)"
    read -r _ p50 p99 _ < <(wrk_run "$target" 1 1 "$small");   add "s1.p50.$target" "$p50"; add "s1.p99.$target" "$p99"
    read -r _ p50 p99 _ < <(wrk_run "$target" 1 1 "$big");     add "s4.p50.$target" "$p50"; add "s4.p99.$target" "$p99"
    s2_measured "$target"
    if [ "$target" = gateway ]; then
      # The same gateway, with a signed-in person's token instead of a device's.
      read -r _ p50 p99 _ < <(wrk_run person 1 1 "$small");     add "s1.p50.person" "$p50"; add "s1.p99.person" "$p99"
      read -r rps p50 p99 _ < <(wrk_run person 2 64 "$small");  add "s2.rps.person" "$rps"; add "s2.p50.person" "$p50"; add "s2.p99.person" "$p99"
    fi
  done
done

echo "==> one Redis round trip (redis-cli --latency, an idle Redis woken for each sample, as in S1)"
redis_rtt=$(for _ in 1 2 3; do redis-cli -p "$redis_port" --latency --raw | awk '{print $3}'; done | median)

echo "==> S5: 256 concurrent open streams through the gateway"
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$gw_pid/status")
bare_rss=$(awk '/VmRSS/ {print $2}' "/proc/$bare_pid/status")
peak=0
( DURATION=12 wrk_run gateway 2 256 "$stream" "x-sim-delay-ms: 40" >"$work/s5.out" ) &
s5=$!
# Meanwhile VERIFY requests, each with its own x-request-id, are sent to completion through the gateway: wrk abandons
# whatever is in flight when its time is up, curl does not, so these are the requests whose rows are counted exactly.
VERIFY=${VERIFY:-1000}
verify_args=()
for i in $(seq 1 "$VERIFY"); do
  verify_args+=(-H "x-request-id: verify-$i" -H "authorization: Bearer $token" -H 'content-type: application/json'
    -H 'anthropic-version: 2023-06-01' --data-binary "@$small" -o /dev/null -w '%{http_code}\n' "$gateway_url" --next)
done
unset 'verify_args[${#verify_args[@]}-1]'   # no --next after the last one
( curl -s "${verify_args[@]}" >"$work/verify.out" ) &
verify=$!
while kill -0 "$s5" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$gw_pid/status"); [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 0.2
done
read -r s5_rps _ _ _ <"$work/s5.out"
wait "$verify"
verified_ok=$(grep -c '^200$' "$work/verify.out" || true)

echo "==> draining the gateway and counting usage rows"
forwarded=$(curl -s "http://127.0.0.1:$sim_upstream/_sim/stats" | sed 's/.*"received":\([0-9]*\).*/\1/')
kill -TERM "$gw_pid"
wait "$gw_pid" 2>/dev/null || true
sql() { psql -h 127.0.0.1 -p "$pg_port" -U postgres -d claudeproxydb -tAc "$1"; }
rows=$(sql "SELECT count(*) FROM usage_events")
distinct=$(sql "SELECT count(DISTINCT correlation_id) FROM usage_events")
answered=$(sql "SELECT count(*) FROM usage_events WHERE upstream_request_id IS NOT NULL")
abandoned=$(sql "SELECT count(*) FROM usage_events WHERE cancelled")
verify_rows=$(sql "SELECT count(*) FROM usage_events WHERE correlation_id LIKE 'verify-%'")
verify_distinct=$(sql "SELECT count(DISTINCT correlation_id) FROM usage_events WHERE correlation_id LIKE 'verify-%'")

us_to_ms() { awk -v v="$1" 'BEGIN { printf "%.3f", v / 1000 }'; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", (b - a) / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
check() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "met" : "**missed**" }'; }

# row NAME FIGURE KEY UNIT(us|ms|rps): direct | YARP alone | gateway, limits in process | gateway | gateway against direct
row() {
  local d b l g
  d=$(med "$3.direct"); b=$(med "$3.bare"); l=$(med "$3.local"); g=$(med "$3.gateway")
  case $4 in
    us) printf '| %s | %s | %s ms | %s ms | %s ms | %s ms | %s ms |' "$1" "$2" "$(us_to_ms "$d")" "$(us_to_ms "$b")" "$(us_to_ms "$l")" \
          "$(us_to_ms "$g")" "$(diff_ms "$d" "$g")" ;;
    ms) printf '| %s | %s | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %+.3f ms |' "$1" "$2" "$d" "$b" "$l" "$g" "$(awk -v a="$d" -v b="$g" 'BEGIN { print b - a }')" ;;
    rps) printf '| %s | %s | %.0f | %.0f | %.0f | %.0f | %.1f %% of direct |' "$1" "$2" "$d" "$b" "$l" "$g" "$(awk -v a="$d" -v b="$g" 'BEGIN { print 100 * b / a }')" ;;
  esac
}
# verdict AWK-CONDITION TARGET-TEXT: the last two cells of a row
verdict() { printf ' %s | %s |\n' "$2" "$(awk "BEGIN { print ($1) ? \"met\" : \"**missed**\" }")"; }
added() { awk -v a="$(med "$1.direct")" -v b="$(med "$1.gateway")" -v f="$2" 'BEGIN { print (b - a) / f }'; }
s1add50=$(added s1.p50 1000); s1add99=$(added s1.p99 1000); s3add=$(added s3.ttfb 1); s4add=$(added s4.p50 1000)
s2share=$(awk -v a="$(med s2.rps.direct)" -v b="$(med s2.rps.gateway)" 'BEGIN { print 100 * b / a }')
s2bare=$(awk -v a="$(med s2.rps.direct)" -v b="$(med s2.rps.bare)" 'BEGIN { print 100 * b / a }')
mb() { awk -v v="$1" 'BEGIN { printf "%.0f", v / 1024 }'; }
peak_mb=$(mb "$peak")
if [ "$verified_ok" = "$VERIFY" ] && [ "$verify_rows" = "$VERIFY" ] && [ "$verify_distinct" = "$VERIFY" ] && [ "$distinct" = "$rows" ]; then
  usage_ok="exactly one per request"
else
  usage_ok="**MISMATCH**"
  echo "usage rows do not match: the gateway's warnings and what is left in its spool follow" >&2
  grep -E 'warn|fail|crit' -A2 "$work/gateway.log" | tail -n 40 >&2 || true
  ls -la "$work/spool-gateway" >&2 || true
fi

micro=""
if [ "$MICRO" = 1 ]; then
  echo "==> BenchmarkDotNet micro-benchmarks (body scan, token validation, usage tap)"
  # BenchmarkDotNet builds a child project next to the benchmarks' own, so it runs from that directory.
  (cd bench/ClaudeProxy.Benchmarks && dotnet "bin/Release/net10.0/ClaudeProxy.Benchmarks.dll" micro --filter '*' --job short \
    --exporters github --artifacts "$work/bdn" >"$work/micro.log" 2>&1) || { tail -n 30 "$work/micro.log"; exit 1; }
  if grep -qE '^\| *[A-Za-z0-9_]+ *\| *NA *\|' "$work"/bdn/results/*-report-github.md; then
    echo "a micro-benchmark failed; its log follows" >&2; grep -iE 'error|exception|failed' "$work/micro.log" | head -n 20 >&2; exit 1
  fi
  for f in "$work"/bdn/results/*-report-github.md; do
    micro+="$(basename "$f" -report-github.md | sed 's/^ClaudeProxy\.Benchmarks\.//'):"$'\n\n'"$(grep '^|' "$f")"$'\n\n'
  done
fi

{
cat <<MD
# Benchmark results

Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): medians of $ROUNDS rounds, each scenario run straight against
the Anthropic simulator (no artificial delay), through YARP's forwarder alone, through the gateway with its limits and
usage log in process (no Redis, no Postgres), and through the gateway, alternating.
The gateway had every feature on: JWT validation, the Redis admission script (rate limit, token budget, spend
reservation), the breaker, the usage tap and pricing, settlement in Redis, and the Postgres usage writer (binary COPY);
request logs at \`${BENCH_LOG_LEVEL:-warn}\`.

Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1); wrk, the simulators, Redis,
PostgreSQL and the gateway all share them. Versions: .NET $(dotnet --version), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2),
Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}').

| scenario | figure | direct | YARP alone | gateway, limits in process | gateway | gateway − direct | target | |
|---|---|---|---|---|---|---|---|---|
$(row "S1: 1 connection, sequential, small message" p50 s1.p50 us; verdict "$s1add50 <= 0.15" "added ≤ 0.15 ms")
$(row "" p99 s1.p99 us; verdict "$s1add99 <= 1" "added ≤ 1 ms")
$(row "S2: 64 connections, small message" "requests/s" s2.rps rps; verdict "$s2share >= 60" "≥ 60 %")
$(row "" p50 s2.p50 us; printf ' | |\n')
$(row "" p99 s2.p99 us; printf ' | |\n')
$(row "S3: streamed answer, 50 deltas" "time to first byte" s3.ttfb ms; verdict "$s3add <= 0.3" "added ≤ 0.3 ms")
$(row "" "time to last byte" s3.ttlb ms; printf ' | |\n')
$(row "S4: 100 KB request body" p50 s4.p50 us; verdict "$s4add <= 0.5" "added ≤ 0.5 ms")
$(row "" p99 s4.p99 us; printf ' | |\n')
| S5: 256 concurrent open streams | gateway resident memory | | | | $peak_mb MB peak | | ≤ 200 MB | $(awk "BEGIN { print ($peak_mb <= 200) ? \"met\" : \"**missed**\" }") |

Gateway resident memory: $(mb "$rss_start") MB after start, $(mb "$rss_before") MB after the rounds, $peak_mb MB at the peak of S5. S5 held 256
streams of 50 events 40 ms apart open through the gateway for 12 s ($s5_rps streams/s completed). S3 is measured by curl,
$STREAMS streams a round over one kept-alive connection. YARP alone reached $(printf '%.1f' "$s2bare") % of the direct throughput in S2.

Usage rows: $VERIFY tagged requests sent to completion during S5 got $verified_ok answers of 200 and $verify_rows rows
($verify_distinct distinct); all in all Postgres holds $rows rows for $distinct distinct requests, against $forwarded requests
received by the gateway's upstream simulator ($answered rows carry its request-id; $abandoned were left by their client,
mostly streams wrk abandoned when its time was up, some before upstream had read them): $usage_ok.
MD
# The targets against YARP's forwarder alone, measured in the same rounds.
of_bare() { awk -v a="$(med "$1.bare")" -v b="$(med "$1.$2")" 'BEGIN { printf "%.1f", 100 * b / a }'; }
over_bare() { awk -v a="$(med "$1.bare")" -v b="$(med "$1.$2")" -v f="$3" 'BEGIN { printf "%.3f", (b - a) / f }'; }
times_bare() { awk -v a="$(med "$1.bare")" -v b="$(med "$1.$2")" 'BEGIN { printf "%.2f", b / a }'; }
yes_no() { awk "BEGIN { print ($1) ? \"met\" : \"**missed**\" }"; }
s2_full=$(of_bare s2.rps gateway); s2_local=$(of_bare s2.rps local)
s1_add=$(over_bare s1.p50 gateway 1000); s1_times=$(times_bare s1.p99 gateway); s3_add=$(over_bare s3.ttfb gateway 1)
cat <<MD

## Targets, against YARP's forwarder alone in the same rounds

| figure | YARP alone | gateway | measured | target | |
|---|---|---|---|---|---|
| S2 requests/s, gateway with every feature on ÷ YARP alone | $(printf '%.0f' "$(med s2.rps.bare)") | $(printf '%.0f' "$(med s2.rps.gateway)") | $s2_full % | ≥ 75 % | $(yes_no "$s2_full >= 75") |
| S2 requests/s, gateway with limits in process ÷ YARP alone | $(printf '%.0f' "$(med s2.rps.bare)") | $(printf '%.0f' "$(med s2.rps.local)") | $s2_local % | ≥ 90 % | $(yes_no "$s2_local >= 90") |
| S1 p50, gateway − YARP alone | $(us_to_ms "$(med s1.p50.bare)") ms | $(us_to_ms "$(med s1.p50.gateway)") ms | +$s1_add ms | ≤ 0.08 ms | $(yes_no "$s1_add <= 0.08") |
| S1 p99, gateway ÷ YARP alone | $(us_to_ms "$(med s1.p99.bare)") ms | $(us_to_ms "$(med s1.p99.gateway)") ms | ${s1_times}× | ≤ 1.5× | $(yes_no "$s1_times <= 1.5") |
| S3 time to first byte, gateway − YARP alone | $(printf '%.3f' "$(med s3.ttfb.bare)") ms | $(printf '%.3f' "$(med s3.ttfb.gateway)") ms | +$s3_add ms | ≤ 0.1 ms | $(yes_no "$s3_add <= 0.1") |
| S5 resident memory, 256 open streams, peak | | $peak_mb MB | $peak_mb MB | ≤ 150 MB | $(yes_no "$peak_mb <= 150") |

## CPU per request in S2

Each process's user and system time over its S2 runs divided by the requests served (/proc/PID/stat), and the whole
machine's busy time (wrk and the simulators included); allocations are the gateway's own count
(\`dotnet.gc.heap.total_allocated\`). With both cores busy, requests/s is two cores divided by the machine's CPU per request.

| target | its own process | Redis | PostgreSQL | whole machine | allocated per request |
|---|---|---|---|---|---|
| direct (the simulator) | $(med cpu.own.direct) µs | | | $(med cpu.all.direct) µs | |
| YARP alone | $(med cpu.own.bare) µs | | | $(med cpu.all.bare) µs | |
| gateway, limits in process | $(med cpu.own.local) µs | | | $(med cpu.all.local) µs | $(med alloc.local) B |
| gateway | $(med cpu.own.gateway) µs | $(med cpu.redis.gateway) µs | $(med cpu.pg.gateway) µs | $(med cpu.all.gateway) µs | $(med alloc.gateway) B |
MD
if [ -n "$BASELINE" ]; then
  printf '| gateway before (%s) | %s µs | %s µs | %s µs | %s µs | %s B |\n' "$(git -C "$BASELINE" log -1 --format=%h)" "$(med cpu.own.baseline)" \
    "$(med cpu.redis.baseline)" "$(med cpu.pg.baseline)" "$(med cpu.all.baseline)" "$(med alloc.baseline)"
fi
cat <<MD

One Redis round trip on this machine, from an idle Redis as in S1 (\`redis-cli --latency\`, median of three 1 s
samplings): $redis_rtt ms.
MD
step() { awk -v a="$(med "$1.$2")" -v b="$(med "$1.$3")" -v f="$4" 'BEGIN { printf "%+.3f", (b - a) / f }'; }
share() { awk -v a="$(med "$1.direct")" -v b="$(med "$1.$2")" 'BEGIN { printf "%.1f", 100 * b / a }'; }
cat <<MD

## What bounds the figures

Each added figure splits into three steps: YARP's forwarder alone over direct, the gateway with its limits in
process over YARP alone, and Redis and Postgres over that.

- S2: on two shared cores requests/s is set by the machine's CPU per request: $(med cpu.all.bare) µs through YARP alone,
  $(med cpu.all.local) µs through the gateway with limits in process, $(med cpu.all.gateway) µs through the gateway
  ($(awk -v a="$(med cpu.all.bare)" -v b="$(med cpu.all.gateway)" 'BEGIN { printf "%.0f", 100 * a / b }') % of YARP's rate at best). Of the gateway's, its own process
  takes $(med cpu.own.gateway) µs (YARP alone's $(med cpu.own.bare) µs; limits in process $(med cpu.own.local) µs: the
  rest is the Redis and Postgres clients), Redis $(med cpu.redis.gateway) µs and PostgreSQL $(med cpu.pg.gateway) µs, all on
  the same two cores as wrk and the simulator. 75 % of YARP's rate would leave the gateway, Redis and PostgreSQL together
  $(awk -v a="$(med cpu.all.bare)" -v o="$(med cpu.own.bare)" 'BEGIN { printf "%.0f", a / 0.75 - a + o }') µs per request.
- S1 p50: $(step s1.p50 direct bare 1000) ms forwarding, $(step s1.p50 bare local 1000) ms the gateway's own work (token, body scan,
  allowlist, breaker, limits, usage tap, pricing), $(step s1.p50 local gateway 1000) ms the Redis admission round trip and the Postgres
  writer sharing the two cores. One Redis round trip from an idle Redis alone takes $redis_rtt ms here.
- S1 p99 is set by scheduling: four server processes, Redis, Postgres and wrk on two cores; the direct p99 itself
  ranges over a few ms between rounds.
- S3 time to first byte: $(step s3.ttfb direct bare 1) ms forwarding, $(step s3.ttfb bare local 1) ms the gateway's own work,
  $(step s3.ttfb local gateway 1) ms Redis and Postgres: the admission's round trip comes before the first byte can.
- S5: the gateway holds $(mb "$rss_start") MB right after start, before its first request (the runtime, JIT-compiled code for
  ASP.NET Core, YARP, EF Core, Npgsql, StackExchange.Redis and OpenTelemetry, and the mapped assembly files) and keeps
  what its pools grew to under S2's load ($(mb "$rss_before") MB after the rounds); the 256 open streams themselves add
  $(awk -v a="$rss_before" -v b="$peak" 'BEGIN { d = (b - a) / 1024; printf "%.0f", d < 0 ? 0 : d }') MB. YARP's forwarder alone holds $(mb "$bare_rss") MB after the same rounds.
MD
person_row() {
  local d p
  d=$(med "$1.gateway"); p=$(med "$1.person")
  case $3 in
    us) printf '| %s | %s ms | %s ms | %s ms |\n' "$2" "$(us_to_ms "$d")" "$(us_to_ms "$p")" "$(diff_ms "$d" "$p")" ;;
    rps) printf '| %s | %.0f | %.0f | %+.1f %% |\n' "$2" "$d" "$p" "$(awk -v a="$d" -v b="$p" 'BEGIN { print 100 * (b - a) / a }')" ;;
  esac
}
printf '\n## A signed-in person under three spend caps against a device\n\nThe same gateway in the same rounds, with the token of a person signed in through the identity provider (`bench/sign-in.py`\nagainst the development provider) instead of a device'"'"'s. The person is under three spend caps (%s): their own\nspend limit, the pool of their provider group and the organisation'"'"'s limit, each reserved and settled with the others.\nCounted by Redis over 300 requests each sent by curl one after another (a few ms apart, longer than SETTLEMENT_DELAY_MS), every\ninstance included: scripts sent to Redis per request (round trips: admission and settlement) device %s, person under three caps %s;\ncommands Redis ran per request, those inside the scripts included, device %s, person %s. Sent back to back on one connection\n(S1'"'"'s load, 3 s), where each settlement rides on the next admission: scripts per request device %s, person %s; commands\ndevice %s, person %s.\n\n' "$caps" "$scripts_device" "$scripts_person" "$commands_device" "$commands_person" "$busy_scripts_device" "$busy_scripts_person" "$busy_commands_device" "$busy_commands_person"

printf '| figure | device token | person token | person − device |\n|---|---|---|---|\n'
person_row s1.p50 "S1 p50" us; person_row s1.p99 "S1 p99" us; person_row s2.rps "S2 requests/s" rps; person_row s2.p50 "S2 p50" us
if [ -n "$BASELINE" ]; then
  before_after() {
    local b g
    b=$(med "$1.baseline"); g=$(med "$1.gateway")
    case $3 in
      us) printf '| %s | %s ms | %s ms | %s ms | %s ms |\n' "$2" "$(us_to_ms "$(med "$1.bare")")" "$(us_to_ms "$b")" "$(us_to_ms "$g")" "$(diff_ms "$b" "$g")" ;;
      rps) printf '| %s | %.0f | %.0f (%.1f %% of YARP alone) | %.0f (%.1f %% of YARP alone) | %+.1f %% |\n' "$2" "$(med "$1.bare")" "$b" \
             "$(awk -v a="$(med "$1.bare")" -v b="$b" 'BEGIN { print 100 * b / a }')" "$g" \
             "$(awk -v a="$(med "$1.bare")" -v b="$g" 'BEGIN { print 100 * b / a }')" "$(awk -v a="$b" -v b="$g" 'BEGIN { print 100 * (b - a) / a }')" ;;
    esac
  }
  printf '\n## Before and after\n\nThe full gateway built from `%s` (%s) ran beside this one in the same rounds, on the same Redis with its own database.\n\n' \
    "$BASELINE" "$(git -C "$BASELINE" log -1 --format='%h %s' 2>/dev/null | cut -c1-80)"
  printf '| figure | YARP alone | before | after | after − before |\n|---|---|---|---|---|\n'
  before_after s1.p50 "S1 p50" us; before_after s1.p99 "S1 p99" us; before_after s2.rps "S2 requests/s" rps
  before_after s2.p50 "S2 p50" us
fi
if [ -f bench/profile-results-before.md ] && [ -f bench/profile-results.md ]; then
  printf '\n## Where a request'"'"'s time goes, step by step, before and after\n\n'
  python3 bench/steps.py bench/profile-results-before.md bench/profile-results.md
fi
if [ -n "$micro" ]; then
  printf '\n## Micro-benchmarks (BenchmarkDotNet, short job)\n\n%s' "$micro"
fi
} >bench/results.md
cat bench/results.md
[ "$usage_ok" = "exactly one per request" ]
