#!/usr/bin/env bash
# uninstall-proxy.sh: when the TLS proxy goes (exposure back to tunnel, or destroy), remove its Caddyfile and its unused network. Safe to re-run.
# Runs on: the server, from components/proxy.py (the proxy step's delete), after the stack's deploy or teardown. Args: INSTALL_DIR.
# Reads: INSTALL_DIR/compose.yaml. Keeps the Caddyfile while a kept compose.yaml still mounts it; keeps the caddy-data volume (certificates).
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROJECT=${PROJECT:-glitchtip}
NETWORK="${PROJECT}_proxy"

main() {
  local dir=${1:?usage: uninstall-proxy.sh INSTALL_DIR} attached
  if [ -f "$dir/compose.yaml" ] && grep -q '/etc/caddy/Caddyfile' "$dir/compose.yaml"; then
    log "$dir/compose.yaml still mounts the Caddyfile (its data was kept): left in place"
  elif [ -e "$dir/Caddyfile" ]; then
    rm -f "$dir/Caddyfile"
    log "$dir/Caddyfile removed"
  else
    log "no $dir/Caddyfile, nothing to remove"
  fi
  if command -v docker >/dev/null 2>&1 && docker network inspect "$NETWORK" >/dev/null 2>&1; then
    attached=$(docker network inspect --format '{{len .Containers}}' "$NETWORK")
    if [ "$attached" = 0 ]; then
      docker network rm "$NETWORK" >/dev/null
      log "Docker network $NETWORK removed"
    else
      log "Docker network $NETWORK still has $attached container(s): left in place"
    fi
  fi
  log "the caddy-data volume (certificates) is kept; remove it with: docker volume rm ${PROJECT}_caddy-data"
}
main "$@"
