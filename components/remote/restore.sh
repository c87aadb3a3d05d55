#!/usr/bin/env bash
# restore.sh: prove a backup set restores (--verify, into a scratch Postgres), or restore it for real (--confirm).
# Runs on: the server, by hand or from scripts/restore_drill.py over SSH. Installed beside backup.sh.
# Reads: --config FILE (default ../backup.conf beside this script), the set's manifest.txt and SHA256SUMS.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(type -t backup_config_load) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/backup-lib.sh"

USAGE="usage: restore.sh [--config FILE] --list | --verify [SET] | --confirm SET
  --list          the complete sets, oldest first
  --verify [SET]  restore SET (default: the newest) into a scratch Postgres container and
                  compare its row counts with the manifest; the live stack is not touched
  --confirm SET   replace GlitchTip's database and uploads with SET: stops GlitchTip,
                  pg_restore --clean --if-exists, uploads, migrate step, start, health check"
SCRATCH=       # the scratch Postgres container of --verify, removed on exit whatever happens
ENV_FILE=
STOPPED=       # --confirm: GlitchTip was stopped by us
DB_CHANGED=    # --confirm: the live database was replaced
declare -A RESTORED=()

cleanup() {
  local rc=$?
  [ -z "$ENV_FILE" ] || rm -f -- "$ENV_FILE"
  if [ -n "$SCRATCH" ]; then
    docker rm -f -v "$SCRATCH" >/dev/null 2>&1 </dev/null || log "warning: could not remove the scratch container $SCRATCH"
  fi
  if [ "$rc" -ne 0 ] && [ -n "$STOPPED" ]; then
    if [ -z "$DB_CHANGED" ]; then
      log "the live database was not changed: starting GlitchTip again"
      compose up -d </dev/null >&2 || log "warning: could not start GlitchTip again (cd $INSTALL_DIR && docker compose up -d)"
    else
      log "GlitchTip is left STOPPED: the database was replaced but a later step failed; fix the cause and run restore.sh --confirm again"
    fi
  fi
}

list() {
  local set
  printf '%-34s %-9s %-20s %s\n' SET LABEL CREATED SIZE
  while IFS= read -r set; do
    printf '%-34s %-9s %-20s %s\n' "$set" "$(manifest_get "$BACKUP_DIR/$set" label)" \
      "$(manifest_get "$BACKUP_DIR/$set" created_at)" "$(du -sh "$BACKUP_DIR/$set" | cut -f1)"
  done < <(list_sets)
}

# read_counts COMMAND...: fill RESTORED from TABLE=ROWS lines printed by COMMAND (fed the count query).
read_counts() {
  local line
  RESTORED=()
  while IFS= read -r line; do
    [ -n "$line" ] && RESTORED[${line%%=*}]=${line#*=}
  done < <(count_rows_sql | "$@")
}

# compare_counts SET: one line per main table; returns 1 when any count differs from the manifest.
compare_counts() {
  local set=$1 table want got status ok=0
  printf '%-34s %12s %12s\n' table backup restored
  for table in "${MAIN_TABLES[@]}"; do
    want=$(manifest_get "$set" "rows.$table")
    got=${RESTORED[$table]:-}
    [ -n "$want$got" ] || continue
    status=ok
    [ "$want" = "$got" ] || { status=MISMATCH; ok=1; }
    printf '%-34s %12s %12s  %s\n' "$table" "${want:-absent}" "${got:-absent}" "$status"
  done
  return "$ok"
}

check_archives() {
  local set=$1 entries want listing
  entries=$(gzip -dc "$set/uploads.tar.gz" | tar -tf - | wc -l) || die "${set##*/}: uploads.tar.gz does not read back"
  want=$(manifest_get "$set" uploads_entries)
  [ "$entries" = "$want" ] || die "${set##*/}: uploads.tar.gz holds $entries entries, the manifest says $want"
  echo "uploads: ok ($entries entries)"
  listing=$(tar -tf "$set/config.tar") || die "${set##*/}: config.tar does not read back"
  grep -Eqx '(\./)?compose\.ya?ml' <<<"$listing" || die "${set##*/}: config.tar holds no compose.yaml"
  echo "config: ok ($(grep -c -v '/$' <<<"$listing") files)"
}

# scratch_image SET: the set's Postgres image, or the stack's current one when that is gone.
scratch_image() {
  local image
  image=$(manifest_get "$1" postgres_image)
  if [ -n "$image" ] && docker image inspect "$image" >/dev/null 2>&1 </dev/null; then
    echo "$image"
    return 0
  fi
  log "the set's Postgres image '${image:-unknown}' is not on this server: using the stack's current one"
  postgres_image
}

start_scratch() {
  local image=$1 i
  SCRATCH=glitchtip-restore-verify-$(random_hex 6)
  ENV_FILE=$(mktemp)
  printf 'POSTGRES_USER=%s\nPOSTGRES_DB=%s\nPOSTGRES_PASSWORD=%s\n' "$DB_USER" "$DB_NAME" "$(random_hex 16)" >"$ENV_FILE"
  # no network at all: nothing can reach it, it cannot reach anything; fsync off: it is thrown away
  docker run -d --name "$SCRATCH" --network none --label glitchtip-migration.role=restore-verify \
    --env-file "$ENV_FILE" "$image" postgres -c fsync=off -c full_page_writes=off -c shared_buffers=32MB </dev/null >/dev/null
  rm -f -- "$ENV_FILE"
  ENV_FILE=
  for ((i = 0; i < 240; i++)); do
    [ "$(docker inspect --format '{{.State.Running}}' "$SCRATCH" </dev/null)" = true ] ||
      die "the scratch Postgres stopped: $(docker logs --tail 5 "$SCRATCH" 2>&1 </dev/null | tr '\n' ' ')"
    # TCP on its own loopback answers only once initialisation is over (the init server has no TCP)
    docker exec "$SCRATCH" pg_isready -q -h 127.0.0.1 -U "$DB_USER" -d "$DB_NAME" </dev/null && return 0
    sleep 0.5
  done
  die "the scratch Postgres did not accept connections within 120 s"
}

verify() {
  local set checked image
  set=$(resolve_set "${1:-}")
  echo "set: ${set##*/} ($(manifest_get "$set" label), created $(manifest_get "$set" created_at), GlitchTip $(manifest_get "$set" glitchtip_version))"
  checked=$(verify_checksums "$set")
  echo "checksums: ok ($checked files)"
  check_archives "$set"
  image=$(scratch_image "$set")
  start_scratch "$image"
  log "restoring into the scratch container $SCRATCH"
  docker exec -i "$SCRATCH" pg_restore --exit-on-error -U "$DB_USER" -d "$DB_NAME" <"$set/db.dump" ||
    die "pg_restore of ${set##*/} into a scratch database failed"
  read_counts docker exec -i "$SCRATCH" "${PSQL[@]}"
  if compare_counts "$set"; then
    echo "verify: OK ${set##*/} restores and matches its manifest"
  else
    echo "verify: FAILED ${set##*/}: restored row counts differ from the manifest"
    return 1
  fi
}

# version_newer A B: A is a newer version than B.
version_newer() {
  [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$1" ]
}

restore_uploads() {
  local set=$1 volume image
  if [ "$(manifest_get "$set" uploads_volume)" = absent ]; then
    log "the set holds no uploads volume: uploads left as they are"
    return 0
  fi
  volume=$(uploads_volume)
  if [ -z "$volume" ]; then
    volume=${COMPOSE_PROJECT}_uploads
    docker volume create --label "com.docker.compose.project=$COMPOSE_PROJECT" \
      --label com.docker.compose.volume=uploads "$volume" </dev/null >/dev/null
  fi
  image=$(postgres_image)
  gzip -dc "$set/uploads.tar.gz" |
    docker run --rm -i --network none --log-driver none -v "$volume:/uploads" --entrypoint sh "$image" \
      -c 'find /uploads -mindepth 1 -delete && tar -C /uploads --numeric-owner -xpf -' ||
    die "restoring the uploads volume $volume failed"
  log "uploads restored into $volume"
}

run_migrate() {
  local services=$1 app
  if grep -qx migrate <<<"$services"; then
    compose run --rm -T migrate </dev/null >&2
  else
    app=$(grep -Ex 'glitchtip|web' <<<"$services" | sed -n 1p)
    [ -n "$app" ] || die "no migrate, glitchtip or web service in $INSTALL_DIR's compose file"
    compose run --rm -T --no-deps "$app" ./bin/run-migrate.sh </dev/null >&2
  fi
}

pg_ready() {
  compose exec -T postgres pg_isready -q -U "$DB_USER" -d "$DB_NAME" </dev/null
}

restore_live() {
  local set services app_services version checked
  set=$(resolve_set "$1")
  checked=$(verify_checksums "$set")
  echo "checksums: ok ($checked files)"
  check_archives "$set" >/dev/null
  version=$(manifest_get "$set" glitchtip_version)
  if [ "$version" != unknown ] && [ "$GLITCHTIP_VERSION" != unknown ] && version_newer "$version" "$GLITCHTIP_VERSION"; then
    die "${set##*/} comes from GlitchTip $version, newer than the $GLITCHTIP_VERSION deployed here: deploy $version first (glitchtipVersion)"
  fi
  services=$(compose config --services </dev/null)
  mapfile -t app_services < <(grep -vx postgres <<<"$services")
  log "stopping GlitchTip (${app_services[*]})"
  STOPPED=1
  compose stop "${app_services[@]}" </dev/null >&2
  compose up -d --no-deps postgres </dev/null >&2
  wait_for 120 "the postgres service accepting connections" pg_ready
  log "restoring the database from ${set##*/} (one transaction: all or nothing)"
  compose exec -T postgres pg_restore --clean --if-exists --single-transaction --exit-on-error \
    -U "$DB_USER" -d "$DB_NAME" <"$set/db.dump" || die "pg_restore failed; the database is unchanged"
  DB_CHANGED=1
  restore_uploads "$set"
  log "running the migrate step"
  run_migrate "$services"
  log "starting GlitchTip"
  compose up -d --wait --wait-timeout 300 </dev/null >&2
  wait_healthy "http://127.0.0.1:$GLITCHTIP_PORT/_health/" 180
  STOPPED=
  echo "health: ok (http://127.0.0.1:$GLITCHTIP_PORT/_health/)"
  read_counts compose exec -T postgres "${PSQL[@]}"
  compare_counts "$set" || log "warning: the live counts already differ from the set (GlitchTip may have written since it started)"
  echo "restore: OK ${set##*/} restored into the live stack"
}

main() {
  local config='' action='' set=''
  while [ $# -gt 0 ]; do
    case "$1" in
      --config) config=${2:?$USAGE}; shift ;;
      --list) action=list ;;
      --verify) action=verify ;;
      --confirm) action=confirm ;;
      -h | --help) echo "$USAGE"; return 0 ;;
      -*) die "unknown option '$1'
$USAGE" ;;
      *) [ -z "$set" ] || die "one SET at most
$USAGE"; set=$1 ;;
    esac
    shift
  done
  [ -n "$action" ] || die "say what to do
$USAGE"
  backup_config_load "${config:-$(default_config)}"
  case "$action" in
    list) list; return 0 ;;
    confirm) [ -n "$set" ] || die "--confirm needs the SET to restore, by name (restore.sh --list)" ;;
  esac
  take_lock
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  if [ "$action" = verify ]; then verify "$set"; else restore_live "$set"; fi
}
main "$@"
