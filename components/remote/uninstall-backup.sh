#!/usr/bin/env bash
# uninstall-backup.sh: on destroy, a final backup while GlitchTip still runs, then remove the cron entry, scripts and backup.conf.
# Runs on: the server, from components/backup.py (the install step's delete). Args: INSTALL_DIR CRON_FILE DATA(keep|delete).
# Keeps every backup set and the log. DATA=delete (deleteDataOnDestroy): a failed final backup stops the destroy.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# stack_running: the GlitchTip compose project's postgres container is up.
stack_running() {
  command -v docker >/dev/null 2>&1 &&
    [ -n "$(docker ps -q --filter label=com.docker.compose.project=glitchtip --filter label=com.docker.compose.service=postgres </dev/null 2>/dev/null)" ]
}

# final_backup DIR DATA: BackupJob goes before the stack on destroy, so the final set is taken here.
final_backup() {
  local dir=$1 data=$2
  if [ ! -x "$dir/bin/backup.sh" ] || [ ! -f "$dir/backup.conf" ]; then
    log "no $dir/bin/backup.sh or backup.conf: no final backup taken"
  elif ! stack_running; then
    log "GlitchTip's postgres is not running: no final backup taken"
  elif "$dir/bin/backup.sh" --final --config "$dir/backup.conf" </dev/null >&2; then
    log "final backup taken"
  elif [ "$data" = delete ]; then
    die "the final backup failed and deleteDataOnDestroy is on, so nothing was removed; fix the cause (see above) and run pulumi destroy again"
  else
    log "warning: the final backup failed; GlitchTip's volumes are kept on destroy, so no data is lost"
  fi
}

main() {
  local dir=${1:?usage: uninstall-backup.sh INSTALL_DIR CRON_FILE keep|delete} cron_file=${2:?} data=${3:?}
  case "$data" in keep | delete) ;; *) die "DATA must be keep or delete" ;; esac
  final_backup "$dir" "$data"
  rm -f -- "$cron_file" "$dir/bin/backup.sh" "$dir/bin/restore.sh" "$dir/backup.conf"
  [ ! -d "$dir/bin" ] || rmdir --ignore-fail-on-non-empty "$dir/bin"
  log "removed $cron_file, the backup scripts and backup.conf; backup sets and the log are kept"
}
main "$@"
