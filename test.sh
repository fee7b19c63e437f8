#!/usr/bin/env bash
# Runs every test: installs what is missing (redis-server, PostgreSQL, Chromium, tmux), builds, runs the suite and
# ends with one line: "tests: N passed, N failed[, N skipped]". Exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")"
source scripts/lib/install.sh

ensure_test_prerequisites || { echo "tests: 0 passed, 1 failed"; exit 1; }

results="$(pwd)/artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"

echo "==> building"
if ! dotnet build ClaudeProxy.sln -c Release -nologo -v quiet >"$results/build.log" 2>&1; then
  tail -n 40 "$results/build.log"
  echo "tests: 0 passed, 1 failed"
  exit 1
fi

echo "==> testing"
dotnet test ClaudeProxy.sln -c Release --no-build -nologo \
  --logger "trx;LogFilePrefix=results" --logger "console;verbosity=normal" \
  --results-directory "$results" -- RunConfiguration.TestSessionTimeout=3000000 2>&1 | tee "$results/console.log" | grep -E '^\s+(Passed|Failed|Skipped) |^(Passed|Failed)!|error' || true
status=${PIPESTATUS[0]}

passed=0; failed=0; skipped=0; found=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  found=1
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); passed=$((passed + ${p:-0}))
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters"); failed=$((failed + ${f:-0}))
  e=$(sed -n 's/.* error="\([0-9]*\)".*/\1/p' <<<"$counters"); failed=$((failed + ${e:-0}))
  t=$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")
  x=$(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$counters")
  skipped=$((skipped + ${t:-0} - ${x:-0}))
done
if [ "$failed" -gt 0 ]; then
  # The failures again at the end, where a truncated log still shows them: each test's name and the first lines of why.
  echo "==> failed"
  for trx in "$results"/*.trx; do
    [ -f "$trx" ] || continue
    python3 - "$trx" <<'PY' || grep -o 'testName="[^"]*"[^>]*outcome="Failed"' "$trx" | sed 's/testName="\([^"]*\)".*/  \1/'
import re, sys, html
text = open(sys.argv[1], encoding="utf-8").read()
for m in re.finditer(r'<UnitTestResult [^>]*?testName="([^"]*)"[^>]*?outcome="Failed".*?</UnitTestResult>', text, re.S):
    print("  " + html.unescape(m.group(1)))
    why = re.search(r"<Message>(.*?)</Message>", m.group(0), re.S)
    stack = re.search(r"<StackTrace>(.*?)</StackTrace>", m.group(0), re.S)
    for part in (why, stack):
        if part:
            for line in html.unescape(part.group(1)).strip().splitlines()[:6]:
                print("      " + line[:300])
PY
  done
fi
if [ "$found" -eq 0 ] || { [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; }; then
  # The run itself broke (crash, hang, no results): that is a failure, never a pass.
  failed=$((failed + 1))
fi
if [ "$skipped" -gt 0 ]; then
  echo "tests: $passed passed, $failed failed, $skipped skipped"
else
  echo "tests: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
