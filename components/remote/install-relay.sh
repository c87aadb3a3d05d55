#!/usr/bin/env bash
# install-relay.sh: write the dual-reporting relay's compose project (compose.yaml from the last arg, nginx.conf 0600 from stdin) and start it. Safe to re-run.
# Runs on: the server, from components/relay.py (dsnTarget=dual), after the stack's deploy (its network glitchtip_default must exist). Args: DIR PROJECT PORT COMPOSE_YAML.
# Reads on stdin (secrets never in argv, logs or stdout): CONF_B64=<nginx.conf, base64>. Prints conf=yes|no compose=yes|no container=<id>.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICE=relay
CONF_NAME=nginx.conf
WAIT_SECONDS=${WAIT_SECONDS:-60}
COMPOSE=()
WORK=

cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }

container_id() { "${COMPOSE[@]}" ps -q "$SERVICE" 2>/dev/null </dev/null | head -n1; }

running() { [ "$(docker inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# same FILE: FILE exists and holds exactly what $WORK/FILE holds.
same() { [ -f "$DIR/$1" ] && cmp -s "$WORK/$1" "$DIR/$1"; }

main() {
  DIR=${1:?usage: install-relay.sh DIR PROJECT PORT COMPOSE_YAML}
  local project=${2:?} port=${3:?} compose_yaml=${4:?} line conf_b64='' conf=no compose=no before after
  while IFS= read -r line || [ -n "$line" ]; do
    case "${line%%=*}" in
      CONF_B64) conf_b64=${line#*=} ;;
      "") ;;
      *) die "stdin: unexpected line '${line%%=*}=...'" ;;
    esac
  done
  [ -n "$conf_b64" ] || die "stdin did not carry CONF_B64: run this step from Pulumi (components/relay.py)"
  grep -q "^  $SERVICE:\$" <<<"$compose_yaml" || die "COMPOSE_YAML has no $SERVICE service: run this step from Pulumi (components/relay.py)"

  mkdir -p "$DIR"
  chmod 0755 "$DIR"
  WORK=$(mktemp -d "$DIR/.relay.XXXXXX")
  trap cleanup EXIT
  umask 077
  printf '%s' "$conf_b64" | base64 -d >"$WORK/$CONF_NAME" 2>/dev/null || die "stdin: CONF_B64 is not base64"
  grep -q '^http {' "$WORK/$CONF_NAME" || die "stdin: CONF_B64 is not the relay's nginx.conf"
  printf '%s\n' "$compose_yaml" >"$WORK/compose.yaml"
  same "$CONF_NAME" || conf=yes
  same compose.yaml || compose=yes
  write_atomically "$DIR/$CONF_NAME" 0600 <"$WORK/$CONF_NAME"
  write_atomically "$DIR/compose.yaml" 0644 <"$WORK/compose.yaml"
  COMPOSE=(docker compose --project-name "$project" --project-directory "$DIR" --file "$DIR/compose.yaml")

  before=$(container_id)
  if [ "$conf" = yes ] && [ -n "$before" ]; then
    # The config is bind-mounted as a file: a replaced file needs a new container to be seen.
    "${COMPOSE[@]}" up -d --force-recreate --remove-orphans </dev/null >&2 || die "docker compose could not recreate $SERVICE (above)"
  elif [ "$compose" = yes ] || [ -z "$before" ] || ! running "$before"; then
    "${COMPOSE[@]}" up -d --remove-orphans </dev/null >&2 || die "docker compose could not start $SERVICE (above; is the stack deployed, with its network?)"
  else
    log "$SERVICE already runs with this config, skipped"
  fi
  after=$(container_id)
  [ -n "$after" ] || die "the $SERVICE container did not start; see: cd $DIR && docker compose -p $project logs $SERVICE"
  wait_for "$WAIT_SECONDS" "an answer of the relay on 127.0.0.1:$port (see: cd $DIR && docker compose -p $project logs $SERVICE)" \
    http_get "http://127.0.0.1:$port/_relay/health"
  echo "conf=$conf compose=$compose container=$after"
}
main "$@"
