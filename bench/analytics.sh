#!/usr/bin/env bash
# The analytics benchmark: PostgreSQL started the way the tests start it, the schema applied by the gateway's own
# migrator (ClaudeProxy.Gateway migrate), a year of rollups for 500 devices generated straight into the rollup tables
# (bench/analytics-data.sql), then the gateway on that database and every analytics page timed over HTTP with the
# operator key: CALLS calls each (default 20, after 2 warm-up calls), median and p95 into bench/analytics-results.md.
# Settings: CALLS, DAYS (default 365), DEVICES (default 500), SKIP_BUILD=1 to use the Release build as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source scripts/lib/install.sh
source bench/lib.sh
bench_needs postgres curl

CALLS=${CALLS:-20}
DAYS=${DAYS:-365}
DEVICES=${DEVICES:-500}

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "==> building Release"
  dotnet build ClaudeProxy.sln -c Release -nologo -v quiet
fi

bench_init analytics

echo "==> starting PostgreSQL (and Redis) with the tests' starters"
bench_servers
"$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres claudeproxydb
database="postgres://postgres@127.0.0.1:$pg_port/claudeproxydb"
gateway="$root/ClaudeProxy.Gateway/bin/Release/net10.0/ClaudeProxy.Gateway.dll"

echo "==> applying the schema with the gateway's migrator"
env DATABASE_URL="$database" dotnet "$gateway" migrate

# The generated year ends with yesterday: today's pages see a full year behind them.
end_day=$(date -u +%Y-%m-%d)
echo "==> generating $DAYS days of rollups for $DEVICES devices"
started=$(date +%s)
"$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d claudeproxydb -q -v days="$DAYS" -v devices="$DEVICES" -v end_day="$end_day" \
  -f bench/analytics-data.sql | tee "$work/volume.txt"
echo "    generated in $(( $(date +%s) - started )) s"
size=$("$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d claudeproxydb -tAc "SELECT pg_size_pretty(pg_database_size('claudeproxydb'))")
# A session with four subagents, one of the latest.
session=$("$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d claudeproxydb -tAc \
  "SELECT session_id FROM session_rollups WHERE agent_id = 'agent-4' ORDER BY last_seen DESC LIMIT 1")

admin_key="bench-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
gw_port=$(free_port)
gw_manage=$(free_port)
env ANTHROPIC_API_KEY="sk-not-used" ANTHROPIC_BASE_URL="http://127.0.0.1:9" \
  JWT_SECRET="bench-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" ADMIN_API_KEY="$admin_key" \
  HOST=127.0.0.1 PORT="$gw_port" MANAGEMENT_PORT="$gw_manage" DATABASE_URL="$database" REDIS_URL="redis://127.0.0.1:$redis_port" \
  USAGE_SPOOL_DIR="$work/spool" LOG_LEVEL=warn \
  dotnet "$gateway" >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$gw_port/readyz" || { cat "$work/gateway.log" >&2; exit 1; }
if [ -n "${ONLY:-}" ]; then
  echo "==> holding before timing: psql -h 127.0.0.1 -p $pg_port -U postgres claudeproxydb; management http://127.0.0.1:$gw_manage (x-api-key $admin_key)"
  sleep infinity & wait $!
fi

year_from=$(date -u -d "$end_day - $DAYS days" +%Y-%m-%d)
pages=(
  "cache?by=model"
  "cache?by=user"
  "cache?by=group"
  "cache?by=device"
  "cache?by=session"
  "cache?by=agent&session=$session"
  "cache?by=model&from=$year_from&to=$end_day"
  "cache?by=user&from=$year_from&to=$end_day"
  "cache?by=group&from=$year_from&to=$end_day"
  "cache?by=device&from=$year_from&to=$end_day"
  "spend?by=model&period=day"
  "spend?by=user&period=day"
  "spend?by=group&period=day"
  "spend?by=device&period=day"
  "spend?by=model&period=month&from=$year_from&to=$end_day"
  "spend?by=device&period=day&from=$year_from&to=$end_day"
  "spend?by=user&period=week&from=$year_from&to=$end_day"
  "spend?by=group&period=month&from=$year_from&to=$end_day"
  "spend?by=device&period=month&from=$year_from&to=$end_day"
  "sessions/top?days=7&limit=10"
  "sessions/top?days=14&limit=10"
  "sessions/$session"
  "errors"
  "errors?from=$year_from&to=$end_day"
  "latency"
  "latency?from=$year_from&to=$end_day"
)

percentile() { sort -g | awk -v q="$1" '{a[NR]=$1} END {i=int(q*NR+0.999999); if (i<1) i=1; if (i>NR) i=NR; printf "%.1f", a[i]}'; }
results="$work/results.txt"
: >"$results"
echo "==> timing each page: $CALLS calls after 2 warm-up calls"
for page in "${pages[@]}"; do
  url="http://127.0.0.1:$gw_manage/manage/v1/analytics/$page"
  for _ in 1 2; do curl -fs -o /dev/null -H "x-api-key: $admin_key" "$url" || { echo "failed: $page" >&2; curl -s -H "x-api-key: $admin_key" "$url" >&2; exit 1; }; done
  times="$work/times.txt"
  bytes=$(curl -fs -H "x-api-key: $admin_key" "$url" | wc -c)
  : >"$times"
  for _ in $(seq 1 "$CALLS"); do
    curl -fs -o /dev/null -w '%{time_total}\n' -H "x-api-key: $admin_key" "$url" | awk '{printf "%.3f\n", $1 * 1000}' >>"$times"
  done
  median=$(percentile 0.5 <"$times")
  p95=$(percentile 0.95 <"$times")
  shown=${page//$session/\{session\}}
  printf '| `GET /manage/v1/analytics/%s` | %s | %s | %s |\n' "$shown" "$median" "$p95" "$bytes" | tee -a "$results"
done

{
  echo "# Analytics pages: time per call"
  echo
  echo "Run by \`bench/analytics.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')."
  echo "Each page called $CALLS times over HTTP with the operator key, after 2 warm-up calls; wall time per call as curl measures it."
  echo "Load average when the timing ended: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)."
  echo "Without from/to a page covers the last 30 days (the cache page by session: 7 days, its longest); \"a year\" is from=$year_from&to=$end_day."
  echo
  echo "Data: $DAYS days for $DEVICES devices (400 people and 100 named devices, 20 groups, 4 models), database $size:"
  echo
  echo '```'
  cat "$work/volume.txt"
  echo '```'
  echo
  echo "| page | median ms | p95 ms | bytes |"
  echo "|---|---|---|---|"
  cat "$results"
} >bench/analytics-results.md
echo "==> bench/analytics-results.md"
if [ -n "${HOLD:-}" ]; then
  echo "==> holding: psql -h 127.0.0.1 -p $pg_port -U postgres claudeproxydb; management http://127.0.0.1:$gw_manage (x-api-key $admin_key)"
  sleep infinity & wait $!
fi
