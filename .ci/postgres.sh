#!/usr/bin/env bash
# Provision a local PostgreSQL for the store's test suite, and print the URL to use.
#
# Usage (as root on Debian 12, e.g. a fresh CI machine or a developer box):
#     eval "$(.ci/postgres.sh)"        # exports CALLBRIDGE_TEST_PG_URL
#     cargo test --test store_suite
#
# What it does, each step safe to repeat (the script is idempotent):
#   1. installs the `postgresql` Debian package with apt-get if no server binary is present;
#   2. creates the default cluster if none exists, and starts it (pg_ctlcluster) if it is down;
#      the Debian cluster listens on 127.0.0.1 only;
#   3. creates the role and database below if they are missing (the role owns the database, so
#      the tests may create and drop one schema per test inside it);
#   4. prints `export CALLBRIDGE_TEST_PG_URL=postgres://…` on stdout. Everything else goes to stderr,
#      so the output can be `eval`ed.
#
# Override with CALLBRIDGE_PG_DB / CALLBRIDGE_PG_USER / CALLBRIDGE_PG_PASSWORD. The password is a
# throwaway for a loopback-only test database, not a secret.
set -euo pipefail

db="${CALLBRIDGE_PG_DB:-callbridge_test}"
user="${CALLBRIDGE_PG_USER:-callbridge}"
password="${CALLBRIDGE_PG_PASSWORD:-callbridge}"

log() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs packages and starts the server as the postgres user)"
    exit 1
fi

server_installed() {
    compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && command -v pg_ctlcluster >/dev/null
}

if ! server_installed; then
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
fi

version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"

if ! pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2
fi

port="$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')"
status="$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')"
if [ "$status" != "online" ]; then
    log "starting cluster $version/main on port $port"
    pg_ctlcluster "$version" main start >&2
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 0.5
done
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
    log "server did not become ready on 127.0.0.1:$port; see /var/log/postgresql/"
    exit 1
fi

as_postgres() { runuser -u postgres -- "$@"; }

as_postgres psql -X -q -p "$port" -v ON_ERROR_STOP=1 \
    -v user="$user" -v password="$password" -v db="$db" >&2 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'user', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL

log "ready: database $db, role $user, 127.0.0.1:$port"
echo "export CALLBRIDGE_TEST_PG_URL=postgres://$user:$password@127.0.0.1:$port/$db"
