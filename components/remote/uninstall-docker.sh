#!/usr/bin/env bash
# uninstall-docker.sh: remove Docker Engine installed by install-docker.sh (only with uninstallDockerOnDestroy=true).
# Runs on: the server, on `pulumi destroy`. Args: none. Keeps /var/lib/docker (volumes, images) and daemon.json.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  if ! dpkg -s docker-ce >/dev/null 2>&1; then
    log "docker-ce is not installed from Docker's repository, nothing to remove"
    return 0
  fi
  apt-mark unhold docker-ce docker-ce-cli >&2
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq docker-ce docker-ce-cli docker-compose-plugin docker-buildx-plugin containerd.io >&2
  rm -f /etc/apt/sources.list.d/docker.sources /etc/apt/keyrings/docker.asc
  log "Docker Engine removed; /var/lib/docker (volumes, images) kept"
}
main "$@"
