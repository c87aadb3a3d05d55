#!/usr/bin/env bash
# backup.sh: one complete GlitchTip backup set (pg_dump, uploads, config) with checksums and a manifest.
# Runs on: the server, from /etc/cron.d/glitchtip-backup, by hand, and with --final on `pulumi destroy`.
# Reads: --config FILE (default ../backup.conf beside this script; keys in backup-lib.sh). Prints the set's path.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(type -t backup_config_load) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/backup-lib.sh"

USAGE="usage: backup.sh [--config FILE] [--final]"
TMP_SET=      # the set being written: removed on any failure, renamed into place only when complete
FIFO_DIR=     # the pipes of the psql session that holds the dump's snapshot open
SNAP_PID=
SNAPSHOT=
snap_in=
snap_out=
ROW_COUNTS=()
PG_VERSION=
PG_IMAGE=
UPLOADS_STATE=
UPLOADS_ENTRIES=0

cleanup() {
  local rc=$?
  close_snapshot
  if [ -n "$TMP_SET" ] && [ -d "$TMP_SET" ]; then
    rm -rf -- "$TMP_SET"
    log "removed the unfinished set $TMP_SET"
  fi
  [ "$rc" -eq 0 ] || log "backup FAILED (exit $rc) at $(date -u +%FT%TZ); no new set, older sets untouched"
}

# human_kib KIB: a size for messages.
human_kib() {
  if [ "$1" -ge 10240 ]; then echo "$(($1 / 1024)) MiB"; else echo "$1 KiB"; fi
}

# log_to_file FILE: cron already appends the run's output to FILE; any other run (by hand, on
# destroy) copies its messages there too, so the log tells every run.
log_to_file() {
  local file=$1
  [ -n "$file" ] || return 0
  [ -e "$file" ] || install -m 0600 /dev/null "$file"
  if [ "$(stat -L -c %d:%i "/proc/$$/fd/2" 2>/dev/null)" != "$(stat -L -c %d:%i "$file")" ]; then
    exec 2> >(tee -a "$file" >&2)
  fi
}

rotate_log() {
  local file=$1 keep=4 max_kib=1024 i
  [ -n "$file" ] && [ -f "$file" ] || return 0
  [ "$(($(stat -c %s "$file") / 1024))" -ge "$max_kib" ] || return 0
  for ((i = keep - 1; i >= 1; i--)); do
    [ ! -f "$file.$i" ] || mv -f "$file.$i" "$file.$((i + 1))"
  done
  # copy + truncate: cron's `>>` keeps writing to the same (now empty) file
  cp -p "$file" "$file.1"
  : >"$file"
  log "rotated $file (kept $keep older logs)"
}

prepare_dir() {
  local stale
  # created 0700; an existing directory keeps its mode (each set is 0700 itself)
  [ -d "$BACKUP_DIR" ] || install -d -m 0700 "$BACKUP_DIR"
  # leftovers of a run killed hard (power loss, SIGKILL): the lock says none is running now
  for stale in "$BACKUP_DIR"/.tmp-glitchtip-*; do
    [ -e "$stale" ] || continue
    rm -rf -- "$stale"
    log "removed the leftover of an interrupted run: $stale"
  done
}

check_free_space() {
  local last size need avail
  avail=$(df -Pk "$BACKUP_DIR" | awk 'NR == 2 {print $4}')
  last=$(list_sets | tail -n 1)
  if [ -z "$last" ]; then
    log "first set in $BACKUP_DIR ($(human_kib "$avail") free)"
    return 0
  fi
  size=$(du -sk "$BACKUP_DIR/$last" | cut -f1)
  need=$((size + size / 10 + 1024)) # the last set, 10% growth and 1 MiB
  [ "$avail" -ge "$need" ] ||
    die "only $(human_kib "$avail") free in $BACKUP_DIR, a new set needs about $(human_kib "$need") (the last one, $last, took $(human_kib "$size")): free space, lower backupRetentionDays or move backupDir to a larger disk"
  log "$(human_kib "$avail") free in $BACKUP_DIR, the last set took $(human_kib "$size")"
}

# open_snapshot: a psql session in the postgres container holding a REPEATABLE READ transaction
# whose exported snapshot (SNAPSHOT) pg_dump then uses, so the dump and the manifest's row
# counts agree even while GlitchTip keeps writing.
open_snapshot() {
  FIFO_DIR=$(mktemp -d)
  mkfifo "$FIFO_DIR/in" "$FIFO_DIR/out"
  compose exec -T postgres "${PSQL[@]}" <"$FIFO_DIR/in" >"$FIFO_DIR/out" &
  SNAP_PID=$!
  exec {snap_in}>"$FIFO_DIR/in" {snap_out}<"$FIFO_DIR/out"
  printf '%s\n' 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;' 'SELECT pg_export_snapshot();' 'SHOW server_version;' >&"$snap_in"
  { read -r -t 120 SNAPSHOT <&"$snap_out" && read -r -t 60 PG_VERSION <&"$snap_out"; } ||
    die "could not open a snapshot of the database: is the postgres service up? (cd $INSTALL_DIR && docker compose ps)"
  [[ $SNAPSHOT =~ ^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$ ]] || die "unexpected answer from pg_export_snapshot()"
}

# count_in_snapshot: the main tables' row counts, read in the snapshot's transaction.
count_in_snapshot() {
  local line=
  { count_rows_sql; printf '%s\n' '\echo __END__'; } >&"$snap_in"
  while IFS= read -r -t 3600 line <&"$snap_out"; do
    [ "$line" != __END__ ] || break
    ROW_COUNTS+=("$line")
  done
  [ "$line" = __END__ ] || die "could not count the rows of the main tables"
  printf 'COMMIT;\n' >&"$snap_in"
}

close_snapshot() {
  local i
  [ -z "$snap_in" ] || exec {snap_in}>&-
  [ -z "$snap_out" ] || exec {snap_out}<&-
  snap_in=''
  snap_out=''
  if [ -n "$SNAP_PID" ]; then
    for ((i = 0; i < 50; i++)); do kill -0 "$SNAP_PID" 2>/dev/null || break; sleep 0.2; done
    kill "$SNAP_PID" 2>/dev/null || true
    wait "$SNAP_PID" 2>/dev/null || true
    SNAP_PID=
  fi
  [ -z "$FIFO_DIR" ] || rm -rf -- "$FIFO_DIR"
  FIFO_DIR=
}

dump_database() {
  open_snapshot
  compose exec -T postgres pg_dump --format=custom --snapshot="$SNAPSHOT" \
    --lock-wait-timeout="${LOCK_WAIT_TIMEOUT}s" -U "$DB_USER" -d "$DB_NAME" </dev/null >"$TMP_SET/db.dump" ||
    die "pg_dump failed (see above); nothing was kept of this run"
  [ "$(head -c 5 "$TMP_SET/db.dump")" = PGDMP ] || die "pg_dump wrote no custom-format archive"
  count_in_snapshot
  close_snapshot
  log "database dumped: $(human_kib "$(du -k "$TMP_SET/db.dump" | cut -f1)"), rows: ${ROW_COUNTS[*]:-none}"
}

archive_uploads() {
  local volume image
  volume=$(uploads_volume)
  if [ -z "$volume" ]; then
    log "warning: the compose project has no 'uploads' volume; the set holds an empty uploads archive"
    tar -cf - -T /dev/null | gzip -n >"$TMP_SET/uploads.tar.gz"
    UPLOADS_STATE=absent
    return 0
  fi
  image=$(postgres_image)
  # A throwaway container of an image already on the server; GNU tar's exit 1 ("file changed
  # as we read it": GlitchTip kept writing) still leaves a valid archive.
  docker run --rm --network none --log-driver none -v "$volume:/uploads:ro" --entrypoint sh "$image" \
    -c 'tar -C /uploads --numeric-owner -cf - . ; rc=$?; [ "$rc" -le 1 ]' </dev/null |
    gzip -n -6 >"$TMP_SET/uploads.tar.gz" || die "archiving the uploads volume $volume failed"
  UPLOADS_STATE=$volume
  UPLOADS_ENTRIES=$(gzip -dc "$TMP_SET/uploads.tar.gz" | tar -tf - | wc -l)
  log "uploads archived: $UPLOADS_ENTRIES entries, $(human_kib "$(du -k "$TMP_SET/uploads.tar.gz" | cut -f1)")"
}

archive_config() {
  local exclude=()
  [ -d "$INSTALL_DIR" ] || die "$INSTALL_DIR does not exist: is GlitchTip deployed here?"
  case "$BACKUP_DIR/" in "$INSTALL_DIR"/*) exclude=(--exclude="./${BACKUP_DIR#"$INSTALL_DIR"/}") ;; esac
  tar -C "$INSTALL_DIR" "${exclude[@]}" -cf "$TMP_SET/config.tar" . || die "archiving $INSTALL_DIR failed"
}

write_manifest() {
  local name=$1 label=$2 line
  PG_IMAGE=$(postgres_image)
  {
    echo "# GlitchTip backup set; restore.sh --verify checks a restore of it against these values."
    echo "format=1"
    echo "name=$name"
    echo "label=$label"
    echo "created_at=$(date -u +%FT%TZ)"
    echo "host=$(hostname)"
    echo "glitchtip_version=$GLITCHTIP_VERSION"
    echo "postgres_image=$PG_IMAGE"
    echo "postgres_server_version=$PG_VERSION"
    echo "database=$DB_NAME"
    docker ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
      --format 'image.{{.Label "com.docker.compose.service"}}={{.Image}}' </dev/null | sort
    echo "uploads_volume=$UPLOADS_STATE"
    echo "uploads_entries=$UPLOADS_ENTRIES"
    for line in "${ROW_COUNTS[@]}"; do echo "rows.$line"; done
  } >"$TMP_SET/manifest.txt"
}

# seal NAME: checksums, modes, fsync, then the one rename that makes the set exist.
seal() {
  local name=$1
  (cd "$TMP_SET" && sha256sum "${SET_FILES[@]}" >SHA256SUMS)
  chmod 0600 "$TMP_SET"/*
  chmod 0700 "$TMP_SET"
  sync "$TMP_SET"/* "$TMP_SET"
  mv -T -- "$TMP_SET" "$BACKUP_DIR/$name"
  TMP_SET=
  sync "$BACKUP_DIR"
}

apply_retention() {
  local dir removed=0
  if [ "$RETENTION_DAYS" -eq 0 ]; then
    log "retention off: no set removed"
    return 0
  fi
  # only regular sets by their exact name; -final sets and anything else are never touched
  while IFS= read -r -d '' dir; do
    [[ ${dir##*/} =~ ^glitchtip-[0-9]{8}T[0-9]{6}Z$ ]] || continue
    rm -rf -- "$dir"
    removed=$((removed + 1))
    log "retention: removed ${dir##*/} (older than $RETENTION_DAYS days)"
  done < <(find "$BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d -name 'glitchtip-*' -mmin "+$((RETENTION_DAYS * 1440))" -print0)
  log "retention: $removed set(s) removed, $(list_sets | wc -l) kept"
}

run_offsite() {
  local set=$1
  [ -n "$OFFSITE_COMMAND" ] || return 0
  # the command itself is never logged: it may hold credentials
  log "offsite copy: running backupOffsiteCommand with $set"
  timeout 6h bash -c "$OFFSITE_COMMAND" offsite-copy "$set" </dev/null >&2 ||
    die "the offsite copy of $set failed (backupOffsiteCommand); the local set is complete and kept, no heartbeat sent"
  log "offsite copy done"
}

# send_heartbeat: POST to HEARTBEAT_URL, which never appears in argv (ps shows argv to every user).
send_heartbeat() {
  if command -v curl >/dev/null 2>&1; then
    printf 'url = "%s"\n' "$(printf '%s' "$HEARTBEAT_URL" | sed 's/[\\"]/\\&/g')" |
      curl -fsS -o /dev/null --max-time 20 --retry 2 --data '' --config -
  else
    printf '%s' "$HEARTBEAT_URL" | python3 -c 'import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.stdin.read().strip(), data=b"", method="POST"), timeout=20).read()'
  fi
}

ping_heartbeat() {
  if [ -z "$HEARTBEAT_URL" ]; then
    log "no heartbeat URL configured, no ping"
  elif send_heartbeat; then
    log "heartbeat sent"
  else
    log "warning: the heartbeat ping failed (the backup itself succeeded); the monitor will report it missing"
  fi
}

main() {
  local config='' label=scheduled name started=$SECONDS
  while [ $# -gt 0 ]; do
    case "$1" in
      --final) label=final ;;
      --config) config=${2:?$USAGE}; shift ;;
      -h | --help) echo "$USAGE"; return 0 ;;
      *) die "unknown argument '$1' ($USAGE)" ;;
    esac
    shift
  done
  backup_config_load "${config:-$(default_config)}"
  take_lock
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  rotate_log "$LOG_FILE"
  log_to_file "$LOG_FILE"
  log "backup started at $(date -u +%FT%TZ) ($label) into $BACKUP_DIR"
  prepare_dir
  check_free_space
  name=glitchtip-$(date -u +%Y%m%dT%H%M%SZ)
  [ "$label" != final ] || name+=-final
  [ ! -e "$BACKUP_DIR/$name" ] || die "$BACKUP_DIR/$name already exists; try again in a second"
  TMP_SET=$BACKUP_DIR/.tmp-$name
  mkdir -m 0700 "$TMP_SET"
  dump_database
  archive_uploads
  archive_config
  write_manifest "$name" "$label"
  seal "$name"
  log "backup $name complete: $(human_kib "$(du -sk "$BACKUP_DIR/$name" | cut -f1)") in $((SECONDS - started)) s"
  echo "$BACKUP_DIR/$name"
  apply_retention
  run_offsite "$BACKUP_DIR/$name"
  ping_heartbeat
}
main "$@"
