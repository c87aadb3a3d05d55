#!/usr/bin/env bash
# teardown-stack.sh: on `pulumi destroy`, a final backup (when BackupJob installed one), then `docker compose down`. Safe to re-run.
# Runs on: the server, from components/stack.py (the deploy step's delete). Args: INSTALL_DIR PROJECT DATA(keep|delete).
# Reads: INSTALL_DIR/compose.yaml and .env, INSTALL_DIR/bin/backup.sh if present. Volumes (and .env, their keys) stay unless DATA=delete.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOWN_SECONDS=${DOWN_SECONDS:-300}

# ---- HOOK: final backup ------------------------------------------------------------------
# BackupJob depends on the stack, so on destroy its own delete takes the final set and removes
# backup.sh before this runs. Should backup.sh still be here (BackupJob retained or removed
# out of band), `--final` takes one more set while the stack still runs. When the data is to be deleted, a failed final backup stops the
# destroy (nothing is stopped); when the volumes stay, it is only a warning.
final_backup() {
  local dir=$1 data=$2 script=$1/bin/backup.sh
  if [ ! -x "$script" ]; then
    log "no $script: BackupJob's removal, which runs before this step, already took the final set"
    return 0
  fi
  log "final backup: $script --final"
  if "$script" --final </dev/null >&2; then
    log "final backup done"
  elif [ "$data" = delete ]; then
    die "the final backup failed, so nothing was stopped or deleted; fix it (or remove $script) and run pulumi destroy again"
  else
    log "warning: the final backup failed; the volumes are kept, so no data is lost"
  fi
}
# ---- /HOOK -------------------------------------------------------------------------------

# down_by_labels PROJECT DATA: without compose.yaml/.env, remove what compose labelled as ours.
down_by_labels() {
  local project=$1 data=$2 ids vols
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086 # one id per word
    docker rm -f $ids >&2
  fi
  if [ "$data" = delete ]; then
    vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
    if [ -n "$vols" ]; then
      # shellcheck disable=SC2086 # one name per word
      docker volume rm $vols >&2
    fi
  fi
  docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >&2
}

# refuse_if_shared PROJECT: stop, before anything changes, when a container of another compose
# project (the dual relay, components/relay.py) still uses this project's network: `down`
# could not remove the network, and the app may still send to that container.
refuse_if_shared() {
  local project=$1 network="$1_default" guests
  guests=$(docker network inspect "$network" --format '{{range .Containers}}{{.Name}} {{end}}' 2>/dev/null) || return 0
  guests=$(for name in $guests; do
    [ "$(docker inspect --format '{{index .Config.Labels "com.docker.compose.project"}}' "$name" 2>/dev/null)" = "$project" ] || printf '%s ' "$name"
  done)
  [ -z "$guests" ] ||
    die "container(s) ${guests% } of another compose project still use the network $network (the dual relay?): point the app away from it (dsnTarget sentry or glitchtip, then pulumi up, which also removes a relay Pulumi knows of), docker rm -f it if it is still there, then destroy again; nothing was stopped"
}

main() {
  local dir=${1:?usage: teardown-stack.sh INSTALL_DIR PROJECT keep|delete} project=${2:?} data=${3:?} flags=()
  case "$data" in keep) ;; delete) flags=(--volumes) ;; *) die "DATA must be keep or delete" ;; esac
  if ! command -v docker >/dev/null 2>&1; then
    log "docker is not installed: nothing to stop"
    return 0
  fi
  if [ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] &&
    { [ "$data" = keep ] || [ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")" ]; }; then
    log "compose project $project has nothing left to remove, skipped"
  else
    refuse_if_shared "$project"
    final_backup "$dir" "$data"
    if [ -f "$dir/compose.yaml" ] && [ -f "$dir/.env" ]; then
      timeout "$DOWN_SECONDS" docker compose --project-name "$project" --project-directory "$dir" \
        --file "$dir/compose.yaml" --env-file "$dir/.env" down --remove-orphans "${flags[@]}" </dev/null >&2 ||
        die "docker compose down failed or did not finish within ${DOWN_SECONDS}s (above)"
    else
      log "$dir/compose.yaml or .env is missing: removing the project's containers by their compose labels"
      down_by_labels "$project" "$data"
    fi
  fi
  if [ "$data" = delete ]; then
    rm -f "$dir/compose.yaml" "$dir/.env" "$dir/.env.previous"
    log "containers, volumes and $dir/{compose.yaml,.env} removed"
    echo "data=deleted"
  else
    log "containers removed; volumes ${project}_pg-data and ${project}_uploads kept, with $dir/.env (their keys) and compose.yaml"
    echo "data=kept"
  fi
}
main "$@"
