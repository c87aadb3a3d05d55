#!/usr/bin/env bash
# uninstall-relay.sh: when the parallel run ends (dsnTarget leaves dual, or destroy), remove the relay's compose project: container, compose file and config. Safe to re-run.
# Runs on: the server, from components/relay.py (the relay step's delete), after the app's DSN no longer points at the relay. Args: DIR PROJECT.
# Reads: docker's compose labels. Removes DIR/nginx.conf (it holds the DSN keys), DIR/compose.yaml and DIR if then empty.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  local dir=${1:?usage: uninstall-relay.sh DIR PROJECT} project=${2:?} ids file
  if command -v docker >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086 # one id per word
      docker rm -f $ids >/dev/null
      log "the $project container is removed"
    else
      log "no $project container, nothing to remove"
    fi
  fi
  for file in nginx.conf compose.yaml; do
    if [ -e "$dir/$file" ]; then
      rm -f "$dir/$file"
      log "$dir/$file removed"
    else
      log "no $dir/$file, nothing to remove"
    fi
  done
  [ ! -d "$dir" ] || rmdir "$dir" 2>/dev/null || log "$dir is not empty, kept"
}
main "$@"
