#!/usr/bin/env bash
# preflight.sh: refuse early, with the fix, when the server cannot host GlitchTip. Changes nothing.
# Runs on: the server, from components/docker_host.py. Args: PORT MIN_MEM_MB MIN_DISK_GB.
# Reads: /etc/os-release, /proc/meminfo, free space of /var/lib/docker (or /var/lib), listening sockets.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OS_RELEASE=${OS_RELEASE:-/etc/os-release}

check_os() {
  [ -r "$OS_RELEASE" ] || die "cannot read $OS_RELEASE; only Debian 11-13 and Ubuntu 22.04/24.04 are supported"
  local id version
  # shellcheck source=/dev/null
  id=$(. "$OS_RELEASE" && echo "${ID:-}")
  # shellcheck source=/dev/null
  version=$(. "$OS_RELEASE" && echo "${VERSION_ID:-}")
  case "$id:$version" in
    debian:11 | debian:12 | debian:13 | ubuntu:22.04 | ubuntu:24.04) ;;
    *) die "unsupported OS '$id $version': use Debian 11-13 or Ubuntu 22.04/24.04 (what Docker's apt repository serves)" ;;
  esac
  echo "os=$id-$version"
}

check_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo "arch=amd64" ;;
    aarch64 | arm64) echo "arch=arm64" ;;
    *) die "unsupported architecture '$(uname -m)': GlitchTip's images exist for amd64 and arm64 only" ;;
  esac
}

check_memory() {
  local need_mb=$1 have_kb
  have_kb=$(awk '/^MemTotal:/ {print $2}' "${MEMINFO:-/proc/meminfo}")
  [ $((have_kb / 1024)) -ge "$need_mb" ] ||
    die "the server has $((have_kb / 1024)) MiB of RAM, GlitchTip's memory budget needs ${need_mb} MiB: lower memoryBudgetMb or use a larger server"
  echo "mem_mb=$((have_kb / 1024))"
}

check_disk() {
  # Images and volumes live under /var/lib/docker: measure its filesystem once it exists.
  local need_gb=$1 dir=${DISK_CHECK_DIR:-/var/lib} have_kb
  [ -n "${DISK_CHECK_DIR:-}" ] || [ ! -d /var/lib/docker ] || dir=/var/lib/docker
  have_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
  [ $((have_kb / 1024 / 1024)) -ge "$need_gb" ] ||
    die "only $((have_kb / 1024 / 1024)) GiB free under $dir, images and data need ${need_gb} GiB: free disk space or grow the volume"
  echo "disk_free_gb=$((have_kb / 1024 / 1024))"
}

check_port() {
  local port=$1
  if port_in_use "$port"; then
    compose_publishes "$port" glitchtip || die "port $port is already taken by another program: free it or choose another glitchtipPort"
    echo "port=$port (ours)"
  else
    echo "port=$port (free)"
  fi
}

main() {
  local port=${1:?usage: preflight.sh PORT MIN_MEM_MB MIN_DISK_GB} mem=${2:?} disk=${3:?}
  check_os
  check_arch
  check_memory "$mem"
  check_disk "$disk"
  check_port "$port"
  log "the server meets every requirement"
}
main "$@"
