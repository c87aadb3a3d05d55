#!/usr/bin/env bash
# install-docker.sh: Docker Engine + compose plugin from Docker's apt repository, pinned; log rotation. Safe to re-run.
# Runs on: the server, from components/docker_host.py. Args: VERSION (e.g. 28.5.2).
# Reads: /etc/os-release, /etc/docker/daemon.json (merged, never replaced wholesale).
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Overridable only so the download path can be unit-tested without touching /etc.
OS_RELEASE=${OS_RELEASE:-/etc/os-release}
KEYRING_DIR=${KEYRING_DIR:-/etc/apt/keyrings}
SOURCES_DIR=${SOURCES_DIR:-/etc/apt/sources.list.d}
DOCKER_ETC=${DOCKER_ETC:-/etc/docker}
# Docker's release signing key (https://docs.docker.com/engine/install/debian/).
DOCKER_KEY_FINGERPRINT=9DC858229FC7DD38854AE2D88D81803C0EBFCD88

docker_ready() {
  command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

add_repository() {
  local id codename arch
  # shellcheck source=/dev/null
  id=$(. "$OS_RELEASE" && echo "$ID")
  # shellcheck source=/dev/null
  codename=$(. "$OS_RELEASE" && echo "$VERSION_CODENAME")
  arch=$(dpkg --print-architecture)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates curl gnupg >&2
  install -d -m 0755 "$KEYRING_DIR"
  curl -fsSL "https://download.docker.com/linux/$id/gpg" -o "$KEYRING_DIR/docker.asc.new"
  gpg --show-keys --with-colons "$KEYRING_DIR/docker.asc.new" | grep -q "^fpr:*:*:*:*:*:*:*:*:$DOCKER_KEY_FINGERPRINT:" ||
    { rm -f "$KEYRING_DIR/docker.asc.new"; die "Docker's signing key did not have the expected fingerprint $DOCKER_KEY_FINGERPRINT; not trusting it"; }
  chmod 0644 "$KEYRING_DIR/docker.asc.new"
  mv -f "$KEYRING_DIR/docker.asc.new" "$KEYRING_DIR/docker.asc"
  write_atomically "$SOURCES_DIR/docker.sources" 0644 <<SOURCES
Types: deb
URIs: https://download.docker.com/linux/$id
Suites: $codename
Components: stable
Architectures: $arch
Signed-By: $KEYRING_DIR/docker.asc
SOURCES
  apt-get update -qq >&2
}

# pinned_version VERSION: the apt version string of docker-ce VERSION in the repository.
pinned_version() {
  local want=$1 found
  found=$(apt-cache madison docker-ce | awk -v w="$want" '{ split($3, a, ":"); v = a[2] ? a[2] : a[1]; if (index(v, w "-") == 1) { print $3; exit } }')
  [ -n "$found" ] || die "docker-ce $want is not in Docker's repository; available: $(apt-cache madison docker-ce | awk '{print $3}' | head -5 | tr '\n' ' ')— set dockerVersion to one of them"
  echo "$found"
}

install_engine() {
  local version=$1 apt_version
  apt_version=$(pinned_version "$version")
  log "installing docker-ce $apt_version"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "docker-ce=$apt_version" "docker-ce-cli=$apt_version" containerd.io docker-buildx-plugin docker-compose-plugin >&2
  apt-mark hold docker-ce docker-ce-cli >&2
}

# The settings this program needs in daemon.json, merged over whatever is there.
configure_daemon() {
  local file=$DOCKER_ETC/daemon.json merged
  install -d -m 0755 "$DOCKER_ETC"
  if [ -f "$file" ] && [ ! -f "$file.pre-glitchtip" ]; then
    cp -p "$file" "$file.pre-glitchtip"
  fi
  merged=$(python3 - "$file" <<'PY'
import json, os, sys
path = sys.argv[1]
current = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
current.update({"log-driver": "json-file", "live-restore": True})
current["log-opts"] = {**current.get("log-opts", {}), "max-size": "10m", "max-file": "3"}
print(json.dumps(current, indent=2, sort_keys=True))
PY
  )
  if [ -f "$file" ] && [ "$(cat "$file")" = "$merged" ]; then
    log "$file already has log rotation and live-restore, skipped"
    return 0
  fi
  printf '%s\n' "$merged" | write_atomically "$file" 0644
  restart_docker
}

restart_docker() {
  if [ -d /run/systemd/system ]; then
    # live-restore can be turned on by a reload; after that a restart keeps containers running.
    systemctl reload docker 2>/dev/null || true
    systemctl restart docker
    systemctl enable docker containerd >/dev/null 2>&1 || true
    wait_for 60 "dockerd restart" docker info
  elif pgrep -x dockerd >/dev/null; then
    log "no systemd: reloaded dockerd with SIGHUP; new log settings apply from its next restart"
    pkill -HUP -x dockerd
  fi
}

main() {
  local version=${1:?usage: install-docker.sh VERSION}
  if docker_ready; then
    log "Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?') with the compose plugin is already installed, skipped"
  else
    add_repository
    install_engine "$version"
  fi
  configure_daemon
  if [ -d /run/systemd/system ]; then
    systemctl is-enabled docker >/dev/null 2>&1 || systemctl enable --now docker >&2
  fi
  wait_for 60 "dockerd answering" docker info
  echo "docker=$(docker version --format '{{.Server.Version}}') compose=$(docker compose version --short)"
}
main "$@"
