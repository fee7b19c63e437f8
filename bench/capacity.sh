#!/usr/bin/env bash
# The capacity bench: the measured inputs of docs/capacity.md, and several gateway instances sharing one Redis and one
# PostgreSQL. Writes bench/capacity-results.md.
#   1. Redis: calls per Redis CPU-second of the gateway's admission and settlement scripts (their text taken from the
#      gateway's assembly), 5,000 devices, a device under one spend cap and a person under three.
#   2. PostgreSQL: rows per second of one usage writer (the gateway's COPY and merge with its rollups), Postgres CPU
#      and WAL per 1,000 rows, at three batch sizes; then 1, 2 and 4 writers at once, sampling their lock waits.
#   3. One full gateway under wrk -t2 -c64: CPU per request of the gateway, Redis, PostgreSQL, the simulator and wrk.
#   4. N = 1..INSTANCES gateways on one Redis and one PostgreSQL, the same JWT_SECRET: one device with a request limit
#      of LIMIT driven through all of them at once far past it (exactly LIMIT answers of 200, the rest 429 in
#      Anthropic's shape, one usage row per 200), the same for a small spend cap, and the throughput of N instances.
# Settings: INSTANCES (default 4), LIMIT (default 300), DURATION seconds of the wrk runs (default 10), REDIS_SECONDS per
# Redis phase (default 8), PG_ROWS per batch size (default 60000), BENCH_LOG_LEVEL (default warn), KEEP_BENCH=1 keeps
# the work folder. Every process runs on this machine and shares its cores: the figures are CPU time per unit of work.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib/install.sh
source bench/lib.sh
bench_needs redis postgres wrk curl

INSTANCES=${INSTANCES:-4}
LIMIT=${LIMIT:-300}
DURATION=${DURATION:-10}
REDIS_SECONDS=${REDIS_SECONDS:-8}
PG_ROWS=${PG_ROWS:-60000}
started=$(date +%s)

echo "==> building Release"
dotnet build ClaudeProxy.sln -c Release -nologo -v quiet

bench_init capacity
bench="$root/bench/ClaudeProxy.Benchmarks/bin/Release/net10.0/ClaudeProxy.Benchmarks.dll"
hz=$(getconf CLK_TCK)
# ticks PID...: their CPU time so far (user + system, in clock ticks); fields 14 and 15 of /proc/PID/stat.
ticks() {
  local total=0 p t
  for p in "$@"; do
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
secs() { awk -v t="$1" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'; }
per_request_us() { awk -v t="$1" -v hz="$hz" -v n="$2" 'BEGIN { printf "%.0f", 1e6 * t / hz / n }'; }

echo "==> starting Redis and PostgreSQL"
bench_servers
psql_() { "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAq "$@"; }
redis_pid=$(redis-cli -p "$redis_port" INFO server | tr -d '\r' | sed -n 's/^process_id://p')
postmaster=$(head -n1 "$(psql_ -d postgres -c 'SHOW data_directory')/postmaster.pid")
pg_pids() { echo "$postmaster" $(ps -o pid= --ppid "$postmaster"); }
gateway_dll="$root/ClaudeProxy.Gateway/bin/Release/net10.0/ClaudeProxy.Gateway.dll"

echo "==> 1. Redis: the admission and settlement scripts, ${REDIS_SECONDS}s a phase"
load1=$(cut -d" " -f1-3 /proc/loadavg)
dotnet "$bench" capacity-redis "127.0.0.1:$redis_port" 5000 "$REDIS_SECONDS" 64 >"$work/redis.md"
cat "$work/redis.md"
redis-cli -p "$redis_port" FLUSHALL >/dev/null
redis-cli -p "$redis_port" CONFIG RESETSTAT >/dev/null

echo "==> 2. PostgreSQL: one usage writer, $PG_ROWS rows a batch size"
"$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres capacity_writer
env DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/capacity_writer" LOG_LEVEL=warn dotnet "$gateway_dll" migrate >"$work/migrate.log" 2>&1 \
  || { cat "$work/migrate.log" >&2; exit 1; }
load2=$(cut -d" " -f1-3 /proc/loadavg)
dotnet "$bench" capacity-postgres "Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=capacity_writer" "$PG_ROWS" 100,500,2000 5000 >"$work/pg.md"
cat "$work/pg.md"

echo "==> starting the simulator and $INSTANCES gateways on one Redis and one PostgreSQL"
"$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres claudeproxydb
simkey="sk-sim-bench-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
sim_port=$(free_port)
dotnet "$root/ClaudeProxy.AnthropicSimulator/bin/Release/net10.0/ClaudeProxy.AnthropicSimulator.dll" \
  --urls "http://127.0.0.1:$sim_port" --api-key "$simkey" --record false >"$work/sim.log" 2>&1 &
sim_pid=$!
pids+=($sim_pid)
jwt_secret=$(random_secret)
admin_key=$(random_secret)
gw_ports=(); gw_pids=(); gw_manage=()
for i in $(seq 1 "$INSTANCES"); do
  port=$(free_port); manage_port=$(free_port)
  # One device limit per minute for the whole run: RATE_LIMIT_MAX is the high default, the exactness devices get LIMIT.
  env ANTHROPIC_API_KEY="$simkey" ANTHROPIC_BASE_URL="http://127.0.0.1:$sim_port" \
    JWT_SECRET="$jwt_secret" ADMIN_API_KEY="$admin_key" \
    HOST=127.0.0.1 PORT="$port" MANAGEMENT_PORT="$manage_port" \
    REDIS_URL="redis://127.0.0.1:$redis_port" DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/claudeproxydb" \
    RATE_LIMIT_MAX=1000000 RATE_LIMIT_WINDOW=60000 TOKEN_LIMIT_PER_MINUTE=1000000000 DEFAULT_SPEND_CAP=1000000 \
    MAX_CONCURRENT_REQUESTS_PER_DEVICE=10000 USAGE_SPOOL_DIR="$work/spool-$i" LOG_LEVEL=${BENCH_LOG_LEVEL:-warn} \
    dotnet "$gateway_dll" >"$work/gateway-$i.log" 2>&1 &
  gw_pids+=($!); pids+=($!); gw_ports+=("$port"); gw_manage+=("$manage_port")
done
wait_http "http://127.0.0.1:$sim_port/_sim/stats"
for port in "${gw_ports[@]}"; do wait_http "http://127.0.0.1:$port/readyz"; done

small="$work/small.json"
printf '%s' '{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}' >"$small"
bootstrap() {
  curl -s "http://127.0.0.1:${gw_ports[0]}/bootstrap" -H 'content-type: application/json' -d '{"device_id":"'"$1"'"}' \
    | sed -n 's/.*"wrapper_token":"\([^"]*\)".*/\1/p'
}
# register DEVICE JSON-POLICY-FIELDS: a device registered by an operator with its own limits, then its token.
register() {
  curl -sf "http://127.0.0.1:${gw_manage[0]}/manage/v1/devices" -H "x-api-key: $admin_key" -H 'content-type: application/json' \
    -d '{"device_id":"'"$1"'",'"$2"'}' >/dev/null || { echo "the management API did not register $1" >&2; return 1; }
  bootstrap "$1"
}
rows() { psql_ -d claudeproxydb -c "SELECT count(*) FROM usage_events${1:+ WHERE $1}"; }
# settle_rows WHERE: waits until the usage rows stop growing (the writers flush every 250 ms), prints their count.
settle_rows() {
  local last=-1 now stable=0
  for _ in $(seq 1 100); do
    now=$(rows "${1:-}")
    if [ "$now" = "$last" ]; then stable=$((stable + 1)); [ "$stable" -ge 3 ] && break; else stable=0; fi
    last=$now; sleep 0.5
  done
  echo "$now"
}
# wrk_bench URL TOKEN THREADS CONNS SECONDS [BODY] -> "requests rps non2xx"; the caller's `times` gives wrk's CPU.
wrk_bench() {
  BENCH_BODY=${6:-$small} BENCH_TOKEN=$2 wrk -t"$3" -c"$4" -d"$5s" --timeout 30s -s bench/post.lua "$1" | awk '/^BENCH/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["requests"], v["rps"], v["non2xx"] }'
}
url() { echo "http://127.0.0.1:${gw_ports[$1]}/v1/messages"; }

echo "==> 4. N instances on one Redis: a request limit of $LIMIT, a spend cap, throughput"
sim_received() { curl -s "http://127.0.0.1:$sim_port/_sim/stats" | sed 's/.*"received":\([0-9]*\).*/\1/'; }
# drive N TOKEN SECONDS CONNS-IN-ALL: one wrk per instance, at once, counting answers; prints "ok limited shaped other".
drive() {
  local n=$1 each=$(( $4 / $1 )) i running=()
  for i in $(seq 0 $((n - 1))); do
    BENCH_BODY=$small BENCH_TOKEN=$2 wrk -t1 -c"$each" -d"$3s" --timeout 30s -s bench/capacity.lua "$(url "$i")" >"$work/drive-$i.out" &
    running+=($!)
  done
  wait "${running[@]}"
  cat "$work"/drive-*.out | awk '/^CAPACITY/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2] } }
    END { print v["ok"] + 0, v["limited"] + 0, v["shaped"] + 0, v["other"] + 0 }'
  rm -f "$work"/drive-*.out
}
load4=$(cut -d" " -f1-3 /proc/loadavg)
exact_rows=""; spend_rows=""; scale_rows=""; exact_all=yes; spend_all=yes
suffix=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
spend_cap=0.05
for n in $(seq 1 "$INSTANCES"); do
  device="exact-$n-$suffix"
  token=$(register "$device" '"rate_limit":'"$LIMIT")
  before=$(sim_received)
  read -r ok limited shaped other <<<"$(drive "$n" "$token" 4 32)"
  stored=$(settle_rows "device_id = '$device'")
  forwarded=$(( $(sim_received) - before ))
  verdict=exact
  { [ "$ok" -eq "$LIMIT" ] && [ "$stored" -eq "$ok" ] && [ "$shaped" -eq "$limited" ] && [ "$other" -eq 0 ] && [ "$forwarded" -eq "$ok" ]; } \
    || { verdict="**not exact**"; exact_all=no; }
  exact_rows+="| $n | $((ok + limited + other)) | $ok | $limited | $shaped | $other | $forwarded | $stored | $verdict |"$'\n'
  echo "    N=$n: $ok answers of 200 for a limit of $LIMIT, $limited of 429 ($shaped in Anthropic's shape), $other other, $stored usage rows"

  device="spend-$n-$suffix"
  token=$(register "$device" '"spend_cap":'"$spend_cap")
  read -r ok limited shaped other <<<"$(drive "$n" "$token" 3 32)"
  stored=$(settle_rows "device_id = '$device'")
  spent=$(psql_ -d claudeproxydb -c "SELECT coalesce(sum(cost_usd), 0) FROM usage_events WHERE device_id = '$device'")
  largest=$(psql_ -d claudeproxydb -c "SELECT coalesce(max(cost_usd), 0) FROM usage_events WHERE device_id = '$device'")
  verdict=$(awk -v s="$spent" -v c="$spend_cap" 'BEGIN { print (s <= c) ? "within the cap" : "**over the cap**" }')
  [ "$verdict" = "within the cap" ] && [ "$stored" -eq "$ok" ] && [ "$shaped" -eq "$limited" ] && [ "$other" -eq 0 ] || spend_all=no
  spend_rows+="| $n | $((ok + limited + other)) | $ok | $limited | $shaped | $stored | \$$spent | \$$largest | $verdict |"$'\n'
  echo "    N=$n: spend cap \$$spend_cap: $ok admitted, \$$spent spent"

  token=$(bootstrap "throughput-$n-$suffix")
  for i in $(seq 0 $((n - 1))); do wrk_bench "$(url "$i")" "$token" 1 8 2 >/dev/null; done
  rows_before=$(settle_rows)
  t_all=$(ticks "${gw_pids[@]:0:$n}"); t_r=$(ticks "$redis_pid"); t_p=$(ticks $(pg_pids)); t_s=$(ticks "$sim_pid")
  running=()
  for i in $(seq 0 $((n - 1))); do
    wrk_bench "$(url "$i")" "$token" 1 $((64 / n)) "$DURATION" >"$work/scale-$i.out" &
    running+=($!)
  done
  wait "${running[@]}"
  rps=$(cat "$work"/scale-*.out | awk '{ s += $2 } END { printf "%.0f", s }')
  rm -f "$work"/scale-*.out
  rows_after=$(settle_rows)
  done_n=$((rows_after - rows_before))
  t_all=$(( $(ticks "${gw_pids[@]:0:$n}") - t_all )); t_r=$(( $(ticks "$redis_pid") - t_r ))
  t_p=$(( $(ticks $(pg_pids)) - t_p )); t_s=$(( $(ticks "$sim_pid") - t_s ))
  scale_rows+="| $n | $rps | $(per_request_us "$t_all" "$done_n") µs | $(per_request_us "$t_r" "$done_n") µs | $(per_request_us "$t_p" "$done_n") µs | $(per_request_us "$t_s" "$done_n") µs |"$'\n'
  echo "    N=$n: $rps requests/s in all"
done

# After the N runs, so the first instance has run under load for a while (its code compiled at the last tier).
echo "==> 3. one gateway under wrk -t2 -c64 for ${DURATION}s: CPU per request"
big="$work/big.json"
{ printf '%s' '{"model":"claude-sonnet-4-5-20250929","max_tokens":1024,"stream":true,"system":[{"type":"text","text":"'
  head -c 92160 /dev/zero | tr '\0' 'x'
  printf '%s' '"}],"messages":[{"role":"user","content":"Hi"}]}'; } >"$big"
declare -A C
# cost_run NAME BODY [HEADER]: after a warm-up, DURATION seconds of wrk against the first instance; the CPU time each
# process used until the last usage row was written, per request served (usage rows written).
cost_run() {
  local name=$1 body=$2 header=${3:-} token out before after t_gw t_redis t_pg t_sim t_wrk t0 part
  token=$(bootstrap "capacity-$name")
  BENCH_HEADER=$header wrk_bench "$(url 0)" "$token" 2 64 5 "$body" >/dev/null
  settle_rows >/dev/null
  before=$(rows)
  t_gw=$(ticks "${gw_pids[0]}"); t_redis=$(ticks "$redis_pid"); t_pg=$(ticks $(pg_pids)); t_sim=$(ticks "$sim_pid")
  t0=$(date +%s.%N)
  out=$( { BENCH_HEADER=$header wrk_bench "$(url 0)" "$token" 2 64 "$DURATION" "$body"; times; } )
  after=$(settle_rows)
  C[$name.wall]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  C[$name.gateway]=$(( $(ticks "${gw_pids[0]}") - t_gw )); C[$name.redis]=$(( $(ticks "$redis_pid") - t_redis ))
  C[$name.pg]=$(( $(ticks $(pg_pids)) - t_pg )); C[$name.sim]=$(( $(ticks "$sim_pid") - t_sim ))
  read -r C[$name.requests] C[$name.rps] C[$name.non2xx] <<<"$(head -n1 <<<"$out")"
  # `times`: the shell's own line, then its children's (wrk): user and system.
  C[$name.wrk]=$(tail -n1 <<<"$out" | awk -v hz="$hz" '{ for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%.0f", s * hz }')
  C[$name.served]=$((after - before))
  for part in gateway redis pg sim wrk; do C[$name.$part.us]=$(per_request_us "${C[$name.$part]}" "${C[$name.served]}"); done
  echo "    $name: ${C[$name.rps]} requests/s, gateway ${C[$name.gateway.us]} µs, Redis ${C[$name.redis.us]} µs, PostgreSQL ${C[$name.pg.us]} µs a request"
}
load3=$(cut -d" " -f1-3 /proc/loadavg)
cost_run small "$small"
cost_run claude "$big" "x-sim-events: 50"
cost_table=$(
  for part in "gateway:gateway" "redis:Redis" "pg:PostgreSQL (all its processes)" "sim:simulator (the upstream)" "wrk:wrk"; do
    key=${part%%:*}
    printf '| %s | %s | %s µs | %s | %s | %s µs | %s |\n' "${part#*:}" \
      "$(secs "${C[small.$key]}")" "${C[small.$key.us]}" "$(awk -v us="${C[small.$key.us]}" 'BEGIN { printf "%.0f", 1e6 / us }')" \
      "$(secs "${C[claude.$key]}")" "${C[claude.$key.us]}" "$(awk -v us="${C[claude.$key.us]}" 'BEGIN { printf "%.0f", 1e6 / us }')"
  done)

redis_row() { grep "^| $1 | $2" "$work/redis.md" | awk -F'|' '{ gsub(/ /, "", $9); print $9 }'; }
admit_d=$(redis_row admission device); settle_d=$(redis_row settlement device)
admit_p=$(redis_row admission person); settle_p=$(redis_row settlement person)
carry_d=$(redis_row "admission carrying a settlement" device); carry_p=$(redis_row "admission carrying a settlement" person)
pair() { awk -v a="$1" -v s="$2" 'BEGIN { printf "%.0f", 1 / (1 / a + 1 / s) }'; }
elapsed=$(( $(date +%s) - started ))

{
cat <<MD
# Capacity: measured inputs and N gateway instances

Written by \`bench/capacity.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') from \`$(git log -1 --format='%h %s' | cut -c1-70)\`$(git diff --quiet HEAD -- ClaudeProxy.Gateway 2>/dev/null || echo ' (with uncommitted changes to the gateway)'), in ${elapsed} s.
docs/capacity.md turns these figures into a sizing.

Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1). Every process of the
bench (load generators, the simulator, the gateways, Redis, PostgreSQL) shares these cores, so the figures that carry
over to other machines are CPU time per unit of work, measured from /proc/PID/stat (user + system) over each phase;
requests per second here are bounded by the two cores, not by any one part. PostgreSQL runs with \`fsync=off\` (the
tests' server). Other work on the machine shows in the load average (1, 5, 15 minutes) at the start of each phase:
$load1 (Redis), $load2 (PostgreSQL), $load4 (N instances), $load3 (one gateway). Versions: .NET $(dotnet --version), Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}').

## 1. Redis: the admission and settlement scripts

The scripts' text is the gateway's own (\`RedisAdmissionStore\`), run with EVALSHA over one StackExchange.Redis
connection with 64 calls in flight, 5,000 devices in turn (keys hash-tagged per device as the gateway's), the
arguments the gateway passes: a request limit, a token budget, the device's standing and its spend cap ("device"), or
a person's own cap, their group's pool (20 groups) and the organisation's ("person"). Before the measured phases a
warm-up fills each device's sliding window and per-second token buckets. \`usec_per_call\` is Redis's own
\`INFO commandstats\` for evalsha over the phase (the script's time inside Redis, without the network).

$(cat "$work/redis.md")

Each request the gateway forwards costs one admission and one settlement: one Redis core sustains about
**$(pair "$admit_d" "$settle_d") requests/s** for devices under one cap and **$(pair "$admit_p" "$settle_p") requests/s** for people under three caps,
when every settlement goes on its own. A device that sends its next request within \`SETTLEMENT_DELAY_MS\` has its last
settlement carried by that admission (the third row of each kind): then one core sustains **$carry_d requests/s** for
devices and **$carry_p** for people.

## 2. PostgreSQL: one usage writer

The gateway's statements (\`UsageSql\`: the staging table, binary COPY of the \`UsageColumns\` row, the one statement
that inserts into \`usage_events\` and adds to the hourly, weekly, monthly, user, group, model, session and
time-to-first-byte rollups) in one transaction per batch, one batch after another on one connection, 5,000 devices,
three models, a session per device, into a freshly migrated database. Postgres CPU is the postmaster's and all its
children's. The gateway's writer flushes at most every 250 ms, so its batch is a quarter of a second of its requests.
The second table runs 1, 2 and 4 writers at once (as 1, 2 and 4 gateways would), each on its own connection with its
own rows over the same devices, while another connection samples \`pg_stat_activity\` every 10 ms for a writer waiting
for a lock: every merge also updates the organisation-wide rollup rows (per model and hour, per model and day), which
each writer's transaction holds until it commits.

$(cat "$work/pg.md")

## 3. One gateway: CPU per request, the whole system

One gateway with every feature on (JWT, the Redis admission script, settlement, the usage tap and pricing, the
Postgres usage writer), \`wrk -t2 -c64 -d${DURATION}s\` after a 5 s warm-up (and after the runs of section 4, so its code is compiled at its
last tier), two kinds of request:

- small: the small non-streaming message (64 tokens at most); ${C[small.served]} requests served (usage rows written; wrk
  counted ${C[small.requests]} completed, ${C[small.non2xx]} not 200), ${C[small.rps]} requests/s.
- like Claude Code: a 90 KB request body (Claude Code sends about that much a turn: system prompt, tools, history)
  and a streamed answer of 50 deltas; ${C[claude.served]} requests served (wrk: ${C[claude.requests]} completed,
  ${C[claude.non2xx]} not 200), ${C[claude.rps]} requests/s.

CPU time of each process from the start of the run until the last usage row was written (${C[small.wall]} s and
${C[claude.wall]} s of wall time), per request served:

| process | small: CPU s | per request | requests per CPU-second | like Claude Code: CPU s | per request | requests per CPU-second |
|---|---|---|---|---|---|---|
$cost_table

## 4. N gateway instances on one Redis and one PostgreSQL

$INSTANCES gateways on their own ports, all with the same \`JWT_SECRET\`, one Redis, one database, one simulator. For each
N, a new device registered by the operator with \`rate_limit\` $LIMIT (per \`RATE_LIMIT_WINDOW\` = 60 s, so every run
lies within one window) gets its token from the first instance, and one wrk per instance sends it the small message at
once (32 connections in all, split evenly) for 4 s, far more than the limit. The answers are counted by status (each
429 checked to begin \`{"type":"error","error":{"type":"rate_limit_error","message":\`), the requests that reached the
simulator are counted, and so are the device's usage rows in Postgres once the writers are done.

| N | requests sent | 200 | 429 | 429 in Anthropic's shape | other | reached upstream | usage rows | |
|---|---|---|---|---|---|---|---|---|
$exact_rows
A spend cap: for each N, a new device with \`spend_cap\` \$$spend_cap (USD for the period), driven the same way for 3 s.
Each admission reserves the request's worst case in Redis, in the same script as the check, so the device's recorded
spend stays within the cap however many instances admit it.

| N | requests sent | 200 | 429 | 429 in Anthropic's shape | usage rows | spent (usage rows) | largest request | |
|---|---|---|---|---|---|---|---|---|
$spend_rows
Throughput: a device with a high limit, one wrk per instance ($((64))/N connections each, ${DURATION} s), CPU per
request of all the instances together, of Redis, PostgreSQL and the simulator:

| N | requests/s in all | gateways' CPU per request | Redis | PostgreSQL | simulator |
|---|---|---|---|---|---|
$scale_rows
On two cores more instances do not add throughput: the instances, Redis, PostgreSQL, the simulator and wrk already
use both cores with one instance, so N instances split the same two cores (and each adds its own thread pools, timers
and connections). Across machines the instances share nothing but Redis and PostgreSQL, so their throughput adds up
until one of those is saturated; docs/capacity.md works out where that is.
MD
} >bench/capacity-results.md
cat bench/capacity-results.md
echo "==> done in ${elapsed} s"
[ "$exact_all" = yes ] || { echo "the request limit was not exact with several instances" >&2; exit 1; }
[ "$spend_all" = yes ] || { echo "the spend cap did not hold with several instances" >&2; exit 1; }
