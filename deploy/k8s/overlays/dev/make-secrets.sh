#!/usr/bin/env bash
# Writes this overlay's secrets (secrets.env, databases.env; readable by you only, never committed) with random
# passwords and keys, once: an existing file is kept. Needs ANTHROPIC_API_KEY in the environment (not on the command
# line). Prints the admin app's password once.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
: "${ANTHROPIC_API_KEY:?set ANTHROPIC_API_KEY in the environment first (read -rs ANTHROPIC_API_KEY; export ANTHROPIC_API_KEY)}"
command -v openssl >/dev/null || { echo "make-secrets.sh needs openssl" >&2; exit 1; }
random() { openssl rand -hex "$1"; }
hex() { od -An -v -tx1 | tr -d ' \n'; }

if [ ! -s databases.env ]; then
  printf 'REDIS_PASSWORD=%s\nPOSTGRES_PASSWORD=%s\n' "$(random 24)" "$(random 24)" > databases.env
fi
redis_password=$(sed -n 's/^REDIS_PASSWORD=//p' databases.env)
postgres_password=$(sed -n 's/^POSTGRES_PASSWORD=//p' databases.env)

if [ ! -s secrets.env ]; then
  # The admin password's hash in the admin app's format: pbkdf2-sha256$iterations$salt$hash (base64).
  password=$(random 12)
  salt=$(openssl rand 16 | hex)
  hash=$(openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexpass:"$(printf %s "$password" | hex)" \
    -kdfopt hexsalt:"$salt" -kdfopt iter:210000 -binary PBKDF2 | base64)
  salt64=$(printf %s "$salt" | sed 's/../\\x&/g' | xargs -0 printf '%b' | base64)
  {
    printf 'ANTHROPIC_API_KEY=%s\n' "$ANTHROPIC_API_KEY"
    printf 'JWT_SECRET=%s\n' "$(random 32)"
    printf 'ADMIN_API_KEY=%s\n' "$(random 32)"
    printf 'ADMIN_PASSWORD_HASH=pbkdf2-sha256$210000$%s$%s\n' "$salt64" "$hash"
    printf 'ConnectionStrings__redis=redis:6379,password=%s\n' "$redis_password"
    printf 'ConnectionStrings__claudeproxydb=Host=postgres;Port=5432;Username=postgres;Password=%s;Database=claudeproxydb\n' "$postgres_password"
  } > secrets.env
  echo "Wrote secrets.env and databases.env. Admin app: user admin, password $password (shown once)."
else
  echo "secrets.env exists; kept."
fi
