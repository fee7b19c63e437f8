#!/usr/bin/env bash
# PostgreSQL for the AppHost in run mode: postgres-server.sh DATA_DIR PORT, password in POSTGRES_PASSWORD.
# Creates the cluster on first start, then runs the server in the foreground on 127.0.0.1 alone. As root every
# server command runs as the postgres user (PostgreSQL refuses root).
set -euo pipefail
data=$1
port=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/postgres" ] || { echo "PostgreSQL is not installed (run ./run.sh, or apt-get install postgresql)" >&2; exit 1; }
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)

mkdir -p "$data"
chmod 700 "$data"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data"
if [ ! -f "$data/PG_VERSION" ]; then
  echo "initdb into $data"
  pwfile=$(mktemp)
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres "$pwfile"
  "${as_pg[@]}" "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C >/dev/null
  rm -f "$pwfile"
else
  echo "reusing the data in $data"
fi

# setpriv execs the server, so $! is PostgreSQL itself.
"${as_pg[@]}" "$bin/postgres" -D "$data" -p "$port" -c listen_addresses=127.0.0.1 -c unix_socket_directories= 2>&1 &
server=$!
# The AppHost stops an executable with SIGTERM, which PostgreSQL takes as a "smart" shutdown that waits for every
# client to leave; SIGINT is its fast, clean shutdown.
trap 'kill -INT "$server" 2>/dev/null' TERM INT
status=0
wait "$server" || status=$?
# A trapped signal ends the first wait early; the second waits for the server to finish shutting down.
wait "$server" 2>/dev/null || true
exit "$status"
