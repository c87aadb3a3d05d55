#!/usr/bin/env bash
# backup-lib.sh: what backup.sh and restore.sh share (config file, compose, lock, sets, row counts).
# Runs on: the server, bundled into the installed backup.sh and restore.sh (components/backup.py).
# Reads: the backup config file named by the caller (KEY=VALUE lines, never executed).
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Server layout conventions (components/settings.py, the stack): not configurable here.
COMPOSE_PROJECT=glitchtip
DB_USER=glitchtip
DB_NAME=glitchtip
# The tables whose row counts a manifest records and a restore is checked against.
MAIN_TABLES=(users_user organizations_ext_organization projects_project issue_events_issue issue_events_issueevent)
# A set is a directory glitchtip-<UTC timestamp>[-final]; sets being written are .tmp-glitchtip-*.
SET_RE='^glitchtip-[0-9]{8}T[0-9]{6}Z(-final)?$'
SET_FILES=(db.dump uploads.tar.gz config.tar manifest.txt)

# Defaults; the config file (backup_config_load) overrides them. Used by the scripts that source this.
# shellcheck disable=SC2034
{
  INSTALL_DIR=/opt/glitchtip
  BACKUP_DIR=/var/backups/glitchtip
  RETENTION_DAYS=0
  GLITCHTIP_VERSION=unknown
  GLITCHTIP_PORT=8000
  LOG_FILE=
  HEARTBEAT_URL=
  OFFSITE_COMMAND=
  LOCK_FILE=/run/lock/glitchtip-backup.lock
  LOCK_WAIT_TIMEOUT=600
}

# backup_config_load FILE: KEY=VALUE lines (the value is the rest of the line, unquoted).
# Parsed, never sourced: a value is data, not shell.
backup_config_load() {
  local file=$1 line key value
  [ -r "$file" ] || die "cannot read the backup config $file (written by pulumi up; run as root)"
  [ -z "$(find "$file" -perm /077 2>/dev/null)" ] || log "warning: $file is readable by others than root; it should be mode 0600"
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    key=${line%%=*}
    value=${line#*=}
    case "$key" in
      INSTALL_DIR | BACKUP_DIR | LOG_FILE | LOCK_FILE | GLITCHTIP_VERSION | HEARTBEAT_URL | OFFSITE_COMMAND) printf -v "$key" '%s' "$value" ;;
      RETENTION_DAYS | GLITCHTIP_PORT | LOCK_WAIT_TIMEOUT)
        [[ $value =~ ^[0-9]+$ ]] || die "$file: $key must be a whole number"
        printf -v "$key" '%s' "$value"
        ;;
      *) log "warning: $file: unknown key '$key' ignored" ;;
    esac
  done <"$file"
}

# default_config: backup.conf in the directory above the installed scripts (${INSTALL_DIR}/bin/..).
default_config() {
  local here=${BASH_SOURCE[0]:-}
  if [ -z "$here" ] || [ ! -f "$here" ]; then
    die "--config FILE is required when the script is not run from its file"
  fi
  echo "$(cd "$(dirname "$here")/.." && pwd)/backup.conf"
}

# compose ARGS...: docker compose on the GlitchTip project, as deploy-stack.sh runs it.
compose() {
  docker compose --project-name "$COMPOSE_PROJECT" --project-directory "$INSTALL_DIR" \
    --file "$INSTALL_DIR/compose.yaml" --env-file "$INSTALL_DIR/.env" "$@"
}

# take_lock: one backup or restore at a time; a second one refuses at once and says so.
take_lock() {
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 9>>"$LOCK_FILE"
  flock -n 9 || die "another backup or restore is running (lock $LOCK_FILE is held); not starting a second one"
}

# list_sets: complete sets in BACKUP_DIR, oldest first (by the timestamp in the name).
list_sets() {
  local dir
  [ -d "$BACKUP_DIR" ] || return 0
  for dir in "$BACKUP_DIR"/glitchtip-*; do
    if [ -d "$dir" ] && [ -f "$dir/SHA256SUMS" ] && [[ ${dir##*/} =~ $SET_RE ]]; then
      printf '%s\n' "${dir##*/}"
    fi
  done | sort
}

# resolve_set [NAME|PATH]: the absolute path of a complete set (the newest when none is named).
resolve_set() {
  local want=${1:-} path
  if [ -z "$want" ]; then
    want=$(list_sets | tail -n 1)
    [ -n "$want" ] || die "no backup set in $BACKUP_DIR"
  fi
  case "$want" in */*) path=$want ;; *) path=$BACKUP_DIR/$want ;; esac
  [ -d "$path" ] || die "no backup set $path (see: restore.sh --list)"
  if [ ! -f "$path/SHA256SUMS" ] || [ ! -f "$path/manifest.txt" ]; then
    die "$path is not a complete backup set"
  fi
  (cd "$path" && pwd)
}

# manifest_get SET KEY: one value from a set's manifest.txt (empty when absent).
manifest_get() {
  awk -v key="$2" 'index($0, key "=") == 1 { print substr($0, length(key) + 2); exit }' "$1/manifest.txt"
}

# verify_checksums SET: every file of the set against SHA256SUMS; the number checked on stdout.
verify_checksums() {
  local set=$1 listed
  listed=$(awk '{print $2}' "$set/SHA256SUMS" | sed 's/^\*//' | sort | tr '\n' ' ')
  [ "$listed" = "$(printf '%s\n' "${SET_FILES[@]}" | sort | tr '\n' ' ')" ] ||
    die "${set##*/}: SHA256SUMS lists '$listed', expected ${SET_FILES[*]}"
  (cd "$set" && sha256sum --check --quiet --strict SHA256SUMS >&2) || die "${set##*/}: checksum mismatch: the set is damaged"
  echo "${#SET_FILES[@]}"
}

# count_rows_sql: one query printing TABLE=ROWS for each main table that exists.
count_rows_sql() {
  local list
  list=$(printf "'%s'," "${MAIN_TABLES[@]}")
  cat <<SQL
SELECT t || '=' || (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM public.%I', t), false, true, '')))[1]::text
FROM unnest(ARRAY[${list%,}]) AS t WHERE to_regclass('public.' || quote_ident(t)) IS NOT NULL ORDER BY t;
SQL
}

# PSQL: how every script talks to the database inside a Postgres container (its local socket).
# shellcheck disable=SC2034
PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$DB_USER" -d "$DB_NAME")

# uploads_volume: the name of the compose project's `uploads` volume (empty when there is none).
uploads_volume() {
  docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
    --filter "label=com.docker.compose.volume=uploads" </dev/null | sed -n 1p
}

# postgres_container: the running container of the stack's postgres service.
postgres_container() {
  local id
  id=$(compose ps -q postgres </dev/null | sed -n 1p)
  [ -n "$id" ] || die "the stack's postgres service is not running (cd $INSTALL_DIR && docker compose ps)"
  echo "$id"
}

# postgres_image: the image reference the stack's postgres container runs (as compose.yaml names it).
postgres_image() {
  local id
  id=$(postgres_container)
  docker inspect --format '{{.Config.Image}}' "$id" </dev/null
}

# random_hex N: N random bytes as hex.
random_hex() {
  od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}
