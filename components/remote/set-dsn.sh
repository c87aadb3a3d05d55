#!/usr/bin/env bash
# set-dsn.sh: point the app's SENTRY_DSN at TARGET's DSN (read from stdin) and restart the app so it takes effect. Safe to re-run.
# Runs on: the server, from components/app_dsn.py. Args: ENV_FILE TARGET(sentry|glitchtip|dual) GLITCHTIP_URL PM2_APPS(comma list) RESTART_COMMAND.
# Reads on stdin (secrets never in argv, logs or stdout): DSN=..., SENTRY_DSN=... (the rollback target), optional API_TOKEN=... lines;
# with TARGET dual, DSN is the relay's and GLITCHTIP_DSN=... is where the relay mirrors to.
# Bundles: app-env.sh
set -Eeuo pipefail
[[ $(type -t log) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(type -t restart_run) == function ]] || source "$(dirname "${BASH_SOURCE[0]}")/app-env.sh"

VISIBLE_SECONDS=${VISIBLE_SECONDS:-30}
DSN=
ROLLBACK_DSN=
API_TOKEN=
MIRROR_DSN=
TARGET=
WORK=

cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }

read_stdin() {
  local line key
  while IFS= read -r line || [ -n "$line" ]; do
    key=${line%%=*}
    case "$key" in
      DSN) DSN=${line#*=} ;;
      SENTRY_DSN) ROLLBACK_DSN=${line#*=} ;;
      API_TOKEN) API_TOKEN=${line#*=} ;;
      GLITCHTIP_DSN) MIRROR_DSN=${line#*=} ;;
      "") ;;
      *) die "stdin: unexpected line '$key=...'" ;;
    esac
  done
  [ -n "$DSN" ] || die "stdin did not carry DSN: run this step from Pulumi (components/app_dsn.py)"
  [ -n "$ROLLBACK_DSN" ] || die "stdin did not carry SENTRY_DSN: run this step from Pulumi (components/app_dsn.py)"
  # Written unquoted into the env file: no blank, quote, '#', '$' or backslash can get in.
  [[ $DSN =~ ^https?://[A-Za-z0-9]+(:[A-Za-z0-9]+)?@[][A-Za-z0-9.:-]+(/[A-Za-z0-9._~-]+)*/?$ ]] ||
    die "stdin: DSN is not a DSN like https://KEY@HOST/PROJECT_ID"
  [ -z "$MIRROR_DSN" ] || [[ $MIRROR_DSN =~ ^https?://[A-Za-z0-9]+@[][A-Za-z0-9.:-]+(/[A-Za-z0-9._~-]+)*/?$ ]] ||
    die "stdin: GLITCHTIP_DSN is not a DSN like http://KEY@HOST/PROJECT_ID"
  [[ $API_TOKEN =~ ^[A-Za-z0-9_-]*$ ]] || die "stdin: API_TOKEN holds characters a GlitchTip token never has"
}

# The gate's checks, in Python (json and HTTP); the DSN and token arrive on its stdin.
gate_program() {
  cat <<'PY'
import json, sys, time, uuid, urllib.error, urllib.request
from urllib.parse import urlsplit

base, visible_seconds = sys.argv[1].rstrip("/"), float(sys.argv[2])
fields = dict(line.split("=", 1) for line in sys.stdin.read().splitlines() if "=" in line)
dsn, token = fields["DSN"], fields.get("API_TOKEN", "")
mirror = fields.get("GLITCHTIP_DSN", "")  # dual: DSN is the relay's, the copies go to this GlitchTip DSN
local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy

def fail(message):
    print(f"set-dsn.sh: gate: {message}; nothing on the server was changed", file=sys.stderr)
    sys.exit(3)

def why(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return str(getattr(exc, "reason", exc))

def get_json(path):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    with local.open(request, timeout=10) as response:
        return json.load(response)

try:
    with local.open(base + "/_health/", timeout=10) as response:
        body = response.read().decode(errors="replace").strip()
except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
    fail(f"GlitchTip at {base} is not healthy (GET /_health/: {why(exc)})")
if body != "ok":
    fail(f"GlitchTip at {base} is not healthy (GET /_health/ answered {body[:40]!r}, not 'ok')")

def send(target, what, strict=True):
    """A test event to TARGET's ingest; its event id once ingest acknowledged it (strict: by its id;
    else any 200 will do: Sentry answers the relay's request, and the copy is looked up below)."""
    parts = urlsplit(target)
    path, _, project = parts.path.rstrip("/").rpartition("/")
    netloc = parts.netloc.rpartition("@")[2]
    ingest = f"{parts.scheme}://{netloc}{path}/api/{project}/envelope/?sentry_key={parts.username}&sentry_version=7&sentry_client=glitchtip-migration%2F1"
    event_id = uuid.uuid4().hex
    message = f"glitchtip-migration {what} {event_id}"
    event = {"event_id": event_id, "timestamp": time.time(), "platform": "other", "level": "info",
             "logger": "glitchtip-migration", "message": message, "tags": {"glitchtip-migration": what.replace(" ", "-")}}
    envelope = b"\n".join(json.dumps(x).encode() for x in ({"event_id": event_id}, {"type": "event"}, event)) + b"\n"
    request = urllib.request.Request(ingest, data=envelope, method="POST", headers={"Content-Type": "application/x-sentry-envelope"})
    try:
        opener = local if parts.hostname in ("127.0.0.1", "localhost", "::1") else urllib.request.build_opener()
        with opener.open(request, timeout=15) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        hint = {403: "the key is not one of that project's keys (or the project was blocked for 30 s after a wrong key)",
                429: "the target is rate limiting this project", 404: "no such ingest endpoint: is the DSN's host GlitchTip?"}
        fail(f"the {what} to project {project} at {netloc} got HTTP {exc.code}: {hint.get(exc.code, 'refused')}")
    except Exception as exc:  # noqa: BLE001
        fail(f"the {what} could not be sent to {netloc} ({why(exc)})")
    if strict and str(answer.get("id", "")).replace("-", "") != event_id:
        fail(f"ingest answered the {what} without acknowledging it ({json.dumps(answer)[:80]})")
    return event_id, project

if mirror:
    # One wrong-key request blocks the GlitchTip project for 30 s: prove the mirror's key first, directly.
    send(mirror, "relay key check")
    print("gate: GlitchTip accepts the relay's key for its copies", file=sys.stderr)
    event_id, _ = send(dsn, "relay check", strict=False)  # through the relay: answered by Sentry (the primary)
    project = urlsplit(mirror).path.rstrip("/").rpartition("/")[2]  # the copy lands in GlitchTip's project
else:
    event_id, project = send(dsn, "cutover check")
print(f"gate: {base}/_health/ ok; test event {event_id} acknowledged by ingest", file=sys.stderr)

if not token:
    print(f"event={event_id} visible=unchecked")
    sys.exit(0)
try:
    where = [(o["slug"], p["slug"]) for o in get_json("/api/0/organizations/")
             for p in get_json(f"/api/0/organizations/{o['slug']}/projects/") if str(p.get("id")) == project]
except Exception as exc:  # noqa: BLE001
    fail(f"GlitchTip's API did not list the projects ({why(exc)}): is API_TOKEN valid?")
if not where:
    fail(f"the API token sees no project with id {project}: the target DSN belongs to another GlitchTip or organization")
org, slug = where[0]
deadline = time.monotonic() + visible_seconds
while True:
    try:
        get_json(f"/api/0/projects/{org}/{slug}/events/{event_id}/")
        break
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            fail(f"GlitchTip's API answered HTTP {exc.code} for the test event")
    except Exception as exc:  # noqa: BLE001
        fail(f"GlitchTip's API did not answer ({why(exc)})")
    if time.monotonic() > deadline:
        fail(f"the test event was acknowledged but is not visible in {org}/{slug} after {visible_seconds:.0f} s: is GlitchTip's worker running?")
    time.sleep(0.5)
print(f"gate: the test event is visible in {org}/{slug}", file=sys.stderr)
print(f"event={event_id} visible=yes")
PY
}

# gate URL: refuse the cutover unless GlitchTip is healthy and a test event to DSN made the round trip.
gate() {
  local url=$1 result
  [ -n "$url" ] || die "no GlitchTip URL given for the cutover gate"
  command -v python3 >/dev/null 2>&1 || die "python3 is missing on the server: the cutover gate needs it"
  result=$(printf 'DSN=%s\nAPI_TOKEN=%s\nGLITCHTIP_DSN=%s\n' "$DSN" "$API_TOKEN" "$MIRROR_DSN" | python3 -c "$(gate_program)" "$url" "$VISIBLE_SECONDS") ||
    die "cutover to $TARGET refused by the gate (above)"
  printf 'gate=passed %s\n' "$result"
}

main() {
  local env_file=${1:?usage: set-dsn.sh ENV_FILE TARGET GLITCHTIP_URL PM2_APPS RESTART_COMMAND}
  local target=${2:?usage: set-dsn.sh ENV_FILE TARGET GLITCHTIP_URL PM2_APPS RESTART_COMMAND}
  local glitchtip_url=${3:-} apps=${4:-} restart_command=${5:-} app_dir backup pending current changed=yes
  case "$target" in sentry | glitchtip | dual) ;; *) die "TARGET must be sentry, glitchtip or dual, not '$target'" ;; esac
  TARGET=$target
  read_stdin
  [ "$target" != dual ] || { [ -n "$MIRROR_DSN" ] && [ -n "$API_TOKEN" ]; } ||
    die "stdin did not carry GLITCHTIP_DSN and API_TOKEN, which dual needs to prove the copies arrive: run this step from Pulumi (components/app_dsn.py)"
  app_dir=$(dirname "$env_file") # the app's directory, also when the env file is a link elsewhere
  env_file=$(env_file_resolve "$env_file")
  backup=$env_file$BACKUP_SUFFIX pending=$env_file$PENDING_SUFFIX
  WORK=$(mktemp -d)
  trap cleanup EXIT

  if [ ! -e "$backup" ]; then
    # First apply: the app's current DSN is what rollback and destroy return to; it must be sentryDsn.
    if current=$(dotenv value "$env_file"); then
      [ -z "$current" ] || [ "$current" = "$ROLLBACK_DSN" ] ||
        die "the app's SENTRY_DSN in $env_file is not the configured sentryDsn: set sentryDsn to the DSN the app uses now (the rollback target), then run again"
    else
      [ $? -eq 3 ] || die "cannot read the SENTRY_DSN of $env_file (above)"
    fi
  fi
  printf '%s\n' "$DSN" | dotenv set "$env_file" >"$WORK/new" || die "cannot edit $env_file (above); it is unchanged"
  [ "$(dotenv value "$WORK/new")" = "$DSN" ] ||
    die "adding $DOTENV_KEY to $env_file would not take effect (its last line continues onto the next for dotenv): add a $DOTENV_KEY= line by hand"
  if cmp -s "$WORK/new" "$env_file"; then
    changed=no
    if [ ! -e "$pending" ]; then
      backup_create "$env_file" "$backup"
      log "SENTRY_DSN in $env_file already points at $target, skipped"
      echo "target=$target changed=no restarted="
      return 0
    fi
    log "$env_file already points at $target but its restart has not succeeded yet: restarting"
  fi

  restart_plan "$app_dir" "$apps" "$restart_command"
  [ "$target" = sentry ] || gate "$glitchtip_url"
  backup_create "$env_file" "$backup"
  : >"$pending"
  [ "$changed" = no ] || env_file_install "$env_file" "$WORK/new"
  restart_run "$DSN"
  rm -f "$pending"
  log "the app reports to $target now"
  echo "target=$target changed=$changed restarted=$RESTARTED"
}

main "$@"
