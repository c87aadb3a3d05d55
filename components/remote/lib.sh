#!/usr/bin/env bash
# lib.sh: helpers shared by every script in components/remote/ (bundled in front of each).
# Runs on: the server, as part of another script. Reads: nothing.
# stdout is stored in Pulumi state: messages go to stderr; stdout carries only results.
set -Eeuo pipefail
umask 077

SCRIPT_NAME=${SCRIPT_NAME:-${0##*/}}

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }

die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

on_error() { printf '%s: failed (exit %s) at line %s: %s\n' "$SCRIPT_NAME" "$1" "$2" "$3" >&2; }
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# write_atomically DEST MODE [OWNER]: stdin -> DEST via a temp file in the same directory.
# Leaves DEST (bytes, mode, mtime) untouched when the content is already the same.
# Prints "changed" or "unchanged" on stderr and returns 0 either way.
write_atomically() {
  local dest=$1 mode=$2 owner=${3:-} dir tmp
  dir=$(dirname "$dest")
  tmp=$(mktemp "$dir/.${dest##*/}.XXXXXX")
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
    chmod "$mode" "$dest"
    [ -z "$owner" ] || chown "$owner" "$dest"
    log "$dest unchanged"
    return 0
  fi
  chmod "$mode" "$tmp"
  [ -z "$owner" ] || chown "$owner" "$tmp"
  mv -f "$tmp" "$dest"
  log "$dest written"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every second, bounded.
wait_for() {
  local seconds=$1 what=$2 waited=0
  shift 2
  until "$@" >/dev/null 2>&1; do
    waited=$((waited + 1))
    [ "$waited" -lt "$seconds" ] || die "$what did not happen within ${seconds}s"
    sleep 1
  done
}

# http_get URL: print the body of a GET on the server itself (curl, wget or python3).
http_get() {
  local url=$1
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 10 "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 10 -O - "$url"
  else
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$url"
  fi
}

# wait_healthy URL SECONDS: until URL answers with a body of "ok".
wait_healthy() {
  local url=$1 seconds=$2 waited=0
  until [ "$(http_get "$url" 2>/dev/null)" = "ok" ]; do
    waited=$((waited + 1))
    [ "$waited" -lt "$seconds" ] || die "$url did not answer 'ok' within ${seconds}s"
    sleep 1
  done
}

# port_in_use PORT: something listens on TCP PORT (ss, or /proc/net/tcp* without iproute2).
port_in_use() {
  local port=$1 hex
  if command -v ss >/dev/null 2>&1; then
    ss -Hltn "sport = :$port" | grep -q .
  else
    hex=$(printf '%04X' "$port")
    awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p {found = 1} END {exit !found}' /proc/net/tcp /proc/net/tcp6 2>/dev/null
  fi
}

# compose_publishes PORT PROJECT: a container of compose project PROJECT publishes PORT.
compose_publishes() {
  command -v docker >/dev/null 2>&1 &&
    [ -n "$(docker ps -q --filter "publish=$1" --filter "label=com.docker.compose.project=$2" 2>/dev/null)" ]
}
