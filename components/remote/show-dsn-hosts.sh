#!/usr/bin/env bash
# show-dsn-hosts.sh: print where the app's SENTRY_DSN points and GlitchTip's own host, as host[:port] only (never a key).
# Runs on: the server, from scripts/status.py over SSH (components/remote.py bundles it). Args: APP_ENV_FILE COMPOSE_FILE.
# Prints two lines, "app HOST" and "glitchtip HOST" ("-" when unknown); the DSN's key never leaves this script.
# Bundles: app-env.sh
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(type -t dotenv) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/app-env.sh"

# url_host URL: host[:port] of a URL or DSN, without scheme, user info (the DSN key) or path.
url_host() {
  local rest=${1#*://}
  rest=${rest%%/*}
  printf '%s\n' "${rest##*@}"
}

main() {
  local env_file=${1:?usage: show-dsn-hosts.sh APP_ENV_FILE COMPOSE_FILE} compose_file=${2:?usage: show-dsn-hosts.sh APP_ENV_FILE COMPOSE_FILE}
  local dsn rc=0 domain=''
  [ -r "$env_file" ] || die "cannot read the app's env file $env_file (appEnvFile)"
  dsn=$(dotenv value "$env_file") || rc=$?
  [ "$rc" -ne 3 ] || die "$env_file assigns no SENTRY_DSN"
  [ "$rc" -eq 0 ] || die "could not read SENTRY_DSN from $env_file"
  [[ $dsn == *://* ]] || die "SENTRY_DSN in $env_file is not a URL"
  printf 'app %s\n' "$(url_host "$dsn")"
  if [ -r "$compose_file" ]; then
    domain=$(sed -nE "s/^[[:space:]]*GLITCHTIP_DOMAIN:[[:space:]]*[\"']?([^\"'[:space:]]+).*/\\1/p" "$compose_file" | head -n 1)
  else
    log "cannot read $compose_file: GlitchTip's host is unknown"
  fi
  if [ -n "$domain" ]; then printf 'glitchtip %s\n' "$(url_host "$domain")"; else printf 'glitchtip -\n'; fi
}
main "$@"
