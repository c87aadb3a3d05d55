#!/usr/bin/env bash
# deploy-stack.sh: write compose.yaml and .env (0600), `docker compose up --wait`, gate on /_health/, create the superuser. Safe to re-run.
# Runs on: the server, from components/stack.py. Args: INSTALL_DIR PROJECT PORT WAIT_SECONDS ADMIN_EMAIL ON_PASSWORD_MISMATCH(fail|adopt) COMPOSE_YAML.
# Reads on stdin (secrets never in argv, logs or stdout): ENV_B64=<.env, base64> and ADMIN_PASSWORD=... lines.
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PULL_SECONDS=${PULL_SECONDS:-1800}
DIR=
PROJECT=
WORK=
ADMIN_PASSWORD=
COMPOSE=()

cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }

# read_payload: stdin -> $WORK/env, ADMIN_PASSWORD.
read_payload() {
  local line key value seen=""
  while IFS= read -r line || [ -n "$line" ]; do
    key=${line%%=*} value=${line#*=}
    case "$key" in
      ENV_B64) printf '%s' "$value" | base64 -d >"$WORK/env" || die "stdin: ENV_B64 is not base64" ;;
      ADMIN_PASSWORD) ADMIN_PASSWORD=$value ;;
      "") continue ;;
      *) die "stdin: unexpected line '$key=...'" ;;
    esac
    seen="$seen $key"
  done
  for key in ENV_B64 ADMIN_PASSWORD; do
    [[ " $seen " == *" $key "* ]] || die "stdin did not carry $key: run this step from Pulumi (components/stack.py)"
  done
  [[ $ADMIN_PASSWORD =~ ^[A-Za-z0-9]{12,}$ ]] || die "stdin: ADMIN_PASSWORD must be 12+ letters and digits"
}

# install_files COMPOSE_YAML: compose.yaml (0640) and .env (0600), atomically; a replaced .env is kept as .env.previous.
install_files() {
  local compose=$1
  [[ $compose == *$'\n'services:$'\n'* ]] || die "the COMPOSE_YAML argument is not a compose file"
  printf '%s' "$compose" | write_atomically "$DIR/compose.yaml" 0640
  if [ -f "$DIR/.env" ] && ! cmp -s "$WORK/env" "$DIR/.env"; then
    cp -p "$DIR/.env" "$DIR/.env.previous"
    chmod 0600 "$DIR/.env.previous"
    log "$DIR/.env changes; its previous content is kept in .env.previous (0600)"
  fi
  write_atomically "$DIR/.env" 0600 <"$WORK/env"
  "${COMPOSE[@]}" config -q </dev/null || die "docker compose rejects $DIR/compose.yaml (see above)"
}

images() { sed -n 's/^ *image: *//p' "$DIR/compose.yaml" | tr -d "'\"" | sort -u; }

pull_missing() {
  local image missing=0
  while read -r image; do
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      log "image $image is not on the server yet"
      missing=1
    fi
  done < <(images)
  if [ "$missing" -eq 0 ]; then
    log "every image is already on the server, nothing pulled"
    return 0
  fi
  timeout "$PULL_SECONDS" "${COMPOSE[@]}" pull --quiet </dev/null >&2 ||
    die "pulling the images failed or took longer than ${PULL_SECONDS}s: check that the server reaches the registry"
}

has_service() { grep -q "^  $1:\$" "$DIR/compose.yaml"; }

container_id() { "${COMPOSE[@]}" ps -q "$1" </dev/null 2>/dev/null | head -n 1; }

# up WAIT_SECONDS [SERVICE...]: create or recreate what changed, bounded twice (compose's own wait and timeout).
up() {
  local wait_s=$1
  shift
  timeout "$((wait_s + 120))" "${COMPOSE[@]}" up -d --wait --wait-timeout "$wait_s" --remove-orphans "$@" </dev/null >&2 ||
    die "docker compose up ${*:-(all services)} did not get healthy within ${wait_s}s; see: cd $DIR && docker compose ps -a && docker compose logs --tail 50"
}

# restart_after_new_database WAIT_SECONDS PG_BEFORE SERVICE...: when this run recreated Postgres,
# restart the app containers it did not recreate, so that no process keeps a connection
# to the old server (app_before: their container ids before this run).
restart_after_new_database() {
  local wait_s=$1 pg_before=$2 service stale=()
  shift 2
  if [ -z "$pg_before" ] || [ "$pg_before" = "$(container_id postgres)" ]; then
    return 0
  fi
  for service in "$@"; do
    if [ -n "${app_before[$service]:-}" ] && [ "${app_before[$service]}" = "$(container_id "$service")" ]; then
      stale+=("$service")
    fi
  done
  [ "${#stale[@]}" -gt 0 ] || return 0
  log "Postgres was recreated: restarting ${stale[*]} so they reconnect to it"
  timeout "$((wait_s + 120))" "${COMPOSE[@]}" restart "${stale[@]}" </dev/null >&2 || die "restarting ${stale[*]} failed"
  up "$wait_s" "${stale[@]}"
}

# pg_login: log in as the app does (TCP to the service name, password from .env), print psql's error if any.
pg_login() {
  # shellcheck disable=SC2016 # expanded by the container's shell, from the container's environment
  "${COMPOSE[@]}" exec -T postgres sh -c \
    'PGPASSWORD="$POSTGRES_PASSWORD" PGCONNECT_TIMEOUT=10 exec psql -h postgres -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "select 1"' \
    </dev/null 2>&1
}

# The SQL is made inside the container from its own environment: the password is in no argv.
pg_adopt_password() {
  # shellcheck disable=SC2016 # expanded by the container's shell, from the container's environment
  "${COMPOSE[@]}" exec -T postgres sh -c \
    'printf "ALTER ROLE \"%s\" WITH PASSWORD '\''%s'\'';\n" "$POSTGRES_USER" "$POSTGRES_PASSWORD" | psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB"' \
    </dev/null >&2
}

check_database_password() {
  local on_mismatch=$1 out
  if out=$(pg_login); then
    log "Postgres accepts the password in .env"
    return 0
  fi
  case "$out" in
    *"password authentication failed"*) ;;
    *) die "cannot log in to Postgres as the app would: $(tail -n 3 <<<"$out")" ;;
  esac
  if [ "$on_mismatch" = adopt ]; then
    log "the Postgres volume was initialised with another password; adoptPostgresPassword=true: giving it the stack's password"
    pg_adopt_password || die "could not change the database password (see above)"
    out=$(pg_login) || die "Postgres still refuses the password after ALTER ROLE: $(tail -n 3 <<<"$out")"
    log "Postgres now accepts the stack's password"
    return 0
  fi
  die "the Postgres data in volume ${PROJECT}_pg-data was initialised with another password than the one this stack holds now (were the stack's secrets regenerated, e.g. by a destroy that kept the data?). GlitchTip was left as it was. Either restore the previous secrets (the former .env is in $DIR/.env.previous if it was replaced here), or let the database take the new password: pulumi config set adoptPostgresPassword true && pulumi up"
}

# ensure_superuser EMAIL SERVICE: create it unless that email exists; the password goes in on stdin.
ensure_superuser() {
  local email=$1 service=$2 out
  if out=$(printf '%s\n' "$ADMIN_PASSWORD" | "${COMPOSE[@]}" exec -T -e "DJANGO_SUPERUSER_EMAIL=$email" "$service" \
    sh -c 'IFS= read -r DJANGO_SUPERUSER_PASSWORD && export DJANGO_SUPERUSER_PASSWORD && exec ./manage.py createsuperuser --noinput' 2>&1); then
    log "superuser $email created"
  elif grep -q "already taken" <<<"$out"; then
    log "superuser $email already exists, left alone"
  else
    die "creating the superuser failed: $(tail -n 5 <<<"$out")"
  fi
}

# server_settings PORT: print version=..., after checking that sign-up is closed.
server_settings() {
  local port=$1 body
  body=$(http_get "http://127.0.0.1:$port/api/settings/") || die "GET /api/settings/ failed on 127.0.0.1:$port"
  python3 -c '
import json, sys
s = json.loads(sys.argv[1])
if s.get("enableUserRegistration") is not False:
    sys.exit("sign-up is still open (enableUserRegistration is not false): check ENABLE_USER_REGISTRATION and that a user exists")
if s.get("enableOrganizationCreation"):
    print("deploy-stack.sh: note: GlitchTip reports enableOrganizationCreation=true", file=sys.stderr)
print("version=%s" % s.get("version", ""))
' "$body"
}

report() {
  local service id
  while read -r service; do
    id=$("${COMPOSE[@]}" ps -q "$service" </dev/null 2>/dev/null | head -n 1)
    [ -z "$id" ] || echo "container.$service=$id"
  done < <("${COMPOSE[@]}" config --services </dev/null)
}

main() {
  DIR=${1:?usage: deploy-stack.sh INSTALL_DIR PROJECT PORT WAIT_SECONDS ADMIN_EMAIL fail|adopt COMPOSE_YAML}
  PROJECT=${2:?}
  local port=${3:?} wait_s=${4:?} admin_email=${5:?} on_mismatch=${6:?} compose=${7:?}
  local app_service=glitchtip services long_running pg_before service private=()
  declare -A app_before=()
  case "$on_mismatch" in fail | adopt) ;; *) die "ON_PASSWORD_MISMATCH must be fail or adopt" ;; esac
  if ! { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; }; then
    die "docker compose is not available: the DockerHost step installs it"
  fi
  COMPOSE=(docker compose --project-name "$PROJECT" --project-directory "$DIR" --file "$DIR/compose.yaml" --env-file "$DIR/.env")

  install -d -m 0750 "$DIR"
  WORK=$(mktemp -d "$DIR/.deploy.XXXXXX")
  trap cleanup EXIT
  read_payload
  install_files "$compose"
  pull_missing

  if has_service web; then app_service=web long_running=(web worker); else long_running=(glitchtip); fi
  pg_before=$(container_id postgres)
  for service in "${long_running[@]}"; do app_before[$service]=$(container_id "$service"); done

  services=(postgres)
  if has_service valkey; then services+=(valkey); fi
  up "$wait_s" "${services[@]}"
  check_database_password "$on_mismatch"
  # The public proxy (exposure=tls) starts last, once the superuser exists: with no user, sign-up is open.
  if has_service caddy; then mapfile -t private < <("${COMPOSE[@]}" config --services </dev/null | grep -vx caddy); fi
  up "$wait_s" "${private[@]}"
  restart_after_new_database "$wait_s" "$pg_before" "${long_running[@]}"
  wait_healthy "http://127.0.0.1:$port/_health/" "$wait_s"
  log "GlitchTip answers ok on 127.0.0.1:$port/_health/"
  ensure_superuser "$admin_email" "$app_service"
  server_settings "$port"
  if has_service caddy; then up "$wait_s" caddy; fi
  report
}
main "$@"
