#!/usr/bin/env bash
# Make sure the Redis and PostgreSQL that the test suite talks to answer; start (or install) them when not.
#
# The tests use TOLLGATE_TEST_REDIS_URL (default redis://127.0.0.1:6379) and TOLLGATE_TEST_PG_URL
# (default postgresql+psycopg://postgres@127.0.0.1:5432/test). A server this script starts keeps running
# after the tests, like the machine's own services: it holds nothing on disk worth keeping.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh

TEST_REDIS_URL=${TOLLGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
PG_URL=${TOLLGATE_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}

say() { printf 'test-services: %s\n' "$*"; }
die() { printf 'test-services: error: %s\n' "$*" >&2; exit 1; }

is_local() { [[ "$1" == 127.0.0.1 || "$1" == localhost || "$1" == ::1 ]]; }

# wait_for DESCRIPTION COMMAND…: retry COMMAND for up to 30 s.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 1 60); do
        "$@" && return 0
        sleep 0.5
    done
    die "$what did not come up within 30 s"
}

# --- Redis --------------------------------------------------------------------------------------------------------

read -r redis_host redis_port < <(url_host_port "$TEST_REDIS_URL" 6379)
if redis_answers "$redis_host" "$redis_port"; then
    say "Redis answers on $redis_host:$redis_port"
else
    is_local "$redis_host" || die "no Redis answers at $TEST_REDIS_URL (TOLLGATE_TEST_REDIS_URL); start it or unset the variable"
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting redis-server on $redis_host:$redis_port (no persistence)"
    redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --save "" --appendonly no \
        --dir /tmp --logfile "/tmp/tollgate-test-redis-$redis_port.log"
    wait_for "redis-server on $redis_port" redis_answers "$redis_host" "$redis_port"
fi

# --- PostgreSQL ---------------------------------------------------------------------------------------------------

read -r pg_host pg_port < <(url_host_port "$PG_URL" 5432)
pg_user=${PG_URL#*://}
pg_user=${pg_user%%@*}
pg_user=${pg_user%%:*}
pg_db=${PG_URL##*/}
pg_db=${pg_db%%\?*}

tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
psql_as() { PGCONNECT_TIMEOUT=5 psql "host=$pg_host port=$pg_port user=$pg_user dbname=$1" -v ON_ERROR_STOP=1 -qAt "${@:2}"; }

if ! is_local "$pg_host"; then
    tcp_open "$pg_host" "$pg_port" || die "nothing listens at $pg_host:$pg_port (TOLLGATE_TEST_PG_URL)"
    say "using PostgreSQL at $pg_host:$pg_port as given by TOLLGATE_TEST_PG_URL"
    exit 0
fi

installed_now=""
command -v psql >/dev/null || apt_install postgresql-client
if ! tcp_open "$pg_host" "$pg_port"; then
    if ! command -v pg_ctlcluster >/dev/null; then
        apt_install postgresql
        installed_now=1
    fi
    # The cluster Debian creates at install time (or any other): start the first one found.
    read -r pg_version pg_cluster _ < <(pg_lsclusters -h | head -1) || true
    [[ -n "${pg_version:-}" ]] || die "no PostgreSQL cluster exists (pg_createcluster 15 main) "
    say "starting PostgreSQL cluster $pg_version/$pg_cluster"
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$pg_cluster" start
    wait_for "PostgreSQL on $pg_port" tcp_open "$pg_host" "$pg_port"
fi

if ! psql_as postgres -c 'select 1' >/dev/null 2>&1; then
    # A fresh Debian install asks for passwords over TCP; the suite connects as the superuser without one.
    # Only a cluster installed by this very run is changed; anybody else's authentication is left alone.
    [[ -n "$installed_now" ]] || die "cannot connect to PostgreSQL as $pg_user at $pg_host:$pg_port without a password; allow it (trust for 127.0.0.1 in pg_hba.conf) or set TOLLGATE_TEST_PG_URL"
    hba=$(runuser -u postgres -- psql -qAt -c 'show hba_file')
    say "allowing local TCP connections without password in $hba (cluster installed by this run)"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    runuser -u postgres -- psql -q -c 'select pg_reload_conf()' >/dev/null
    wait_for "PostgreSQL trust authentication" psql_as postgres -c 'select 1'
fi

if [[ -z $(psql_as postgres -c "select 1 from pg_database where datname = '$pg_db'") ]]; then
    say "creating database $pg_db"
    psql_as postgres -c "create database \"$pg_db\""
fi
say "PostgreSQL answers on $pg_host:$pg_port, database $pg_db"
