#!/usr/bin/env bash
# restore-dsn.sh: put the app's original SENTRY_DSN line(s) back byte for byte (from set-dsn.sh's backup) and restart the app. Safe to re-run.
# Runs on: the server, on `pulumi destroy` of components/app_dsn.py (the command stored in state). Args: ENV_FILE PM2_APPS(comma list) RESTART_COMMAND.
# Reads: ENV_FILE and ENV_FILE.glitchtip-migration.orig; nothing on stdin.
# Bundles: app-env.sh
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(type -t restart_run) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/app-env.sh"

WORK=

cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }

main() {
  local env_file=${1:?usage: restore-dsn.sh ENV_FILE PM2_APPS RESTART_COMMAND} apps=${2:-} restart_command=${3:-}
  local app_dir backup pending original=""
  app_dir=$(dirname "$env_file") # the app's directory, also when the env file is a link elsewhere
  if [ ! -e "$env_file" ]; then
    log "$env_file is gone: nothing to put the original SENTRY_DSN back into; skipped (a backup, if any, stays beside it)"
    echo "restored=no"
    return 0
  fi
  env_file=$(env_file_resolve "$env_file")
  backup=$env_file$BACKUP_SUFFIX pending=$env_file$PENDING_SUFFIX
  if [ ! -e "$backup" ]; then
    log "no $backup: the original SENTRY_DSN was never replaced, or is back already; skipped"
    echo "restored=no"
    return 0
  fi
  WORK=$(mktemp -d)
  trap cleanup EXIT
  dotenv restore "$env_file" <"$backup" >"$WORK/new" || die "cannot put the original SENTRY_DSN back into $env_file (above); the original line(s) are in $backup"
  # The value the app had: empty when the original file had no SENTRY_DSN line.
  original=$(dotenv value "$backup") || [ $? -eq 3 ] || die "cannot read $backup"
  if cmp -s "$WORK/new" "$env_file" && [ ! -e "$pending" ]; then
    log "$env_file already has its original SENTRY_DSN line(s)"
  else
    restart_plan "$app_dir" "$apps" "$restart_command"
    : >"$pending"
    env_file_install "$env_file" "$WORK/new"
    [ -n "$original" ] || log "the original file had no SENTRY_DSN: the app gets an empty one (Sentry disabled, as before)"
    restart_run "$original"
    rm -f "$pending"
  fi
  rm -f "$backup"
  log "original SENTRY_DSN back in $env_file; $backup removed"
  echo "restored=yes restarted=$RESTARTED"
}

main "$@"
