#!/bin/sh
# docker-entrypoint.sh of the postgres STAND-IN image (Debian's PostgreSQL 15 under an
# official-looking name): POSTGRES_USER/PASSWORD/DB, PGDATA, /docker-entrypoint-initdb.d,
# scram for every TCP connection. Runs in: a container on the throwaway server.
set -eu

pgbin=/usr/lib/postgresql/15/bin
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

log() { echo "postgres-standin: $*" >&2; }

as_root() {
  # The 18+ images refuse the pre-18 mount point (data in /var/lib/postgresql/data).
  if [ "${PG_STANDIN_LAYOUT:-}" = 18 ] && [ "$PGDATA" != /var/lib/postgresql/data ] \
    && mountpoint -q /var/lib/postgresql/data 2>/dev/null; then
    log "Error: in 18+, mount the volume at /var/lib/postgresql, not /var/lib/postgresql/data"
    exit 1
  fi
  mkdir -p "$PGDATA" /run/postgresql
  chown postgres:postgres "$PGDATA" /run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
}

init_cluster() {
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "Error: database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD)."
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list, as upstream
  "$pgbin/initdb" --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  printf '%s\n' "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  printf '%s\n' "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  "$pgbin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    "$pgbin/psql" -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -q \
      -c "CREATE DATABASE \"$POSTGRES_DB\"" </dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) log "running $f"; sh "$f" ;;
      *.sql) log "running $f"; "$pgbin/psql" -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) log "running $f"; gzip -dc "$f" | "$pgbin/psql" -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" ;;
      *) ;;
    esac
  done
  "$pgbin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  log "PostgreSQL init process complete; ready for start up."
}

main() {
  if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
  fi
  if [ "$1" = postgres ]; then
    if [ "$(id -u)" = 0 ]; then
      as_root "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      init_cluster
    fi
    shift
    # docker import cannot set STOPSIGNAL SIGINT (the official image's): translate
    # docker stop's SIGTERM into a fast shutdown instead of a smart one.
    "$pgbin/postgres" -D "$PGDATA" "$@" &
    pid=$!
    trap 'kill -INT "$pid"' TERM INT
    while kill -0 "$pid" 2>/dev/null; do
      wait "$pid" || true
    done
    wait "$pid"
  fi
  exec "$@"
}

main "$@"
