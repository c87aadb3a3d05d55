"""GlitchTipSecrets and GlitchTipStack under mocks, the pure renderers, and the stack's scripts run locally.

The program part reads what really leaves the operator's machine: the deploy step's
command string (whose last argument is compose.yaml) and its stdin (.env, base64, and
the admin password in KEY=value lines). The
script part runs deploy-stack.sh / teardown-stack.sh with bash exactly as the server
would (lib.sh bundled in front), against a recording fake `docker` and a loopback HTTP
stand-in for GlitchTip's /_health/ and /api/settings/: it proves files, modes, order,
idempotency and messages, not Docker's behaviour (tests/integration does that).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from components.remote import bundle, parse_command, render_script
from components.settings import MEMORY_FLOOR_MB, ConfigError, memory_plan
from components.stack import (
    ENV_KEYS,
    ComposeSpec,
    Images,
    env_values,
    parse_results,
    postgres_layout,
    render_compose,
    render_env,
    render_stdin,
    web_tuning,
)
from tests import harness
from tests.harness import Program, prod_config, run_program

SMTP_URL = "smtp+tls://mailer:SmtpPassw0rdXyz@smtp.example.com:587"
PINNED = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:\d+)?[a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*@sha256:[a-f0-9]{64}$")
LOOKUP = "docker:index/getRegistryImage:getRegistryImage"
RELAY_MB = MEMORY_FLOOR_MB["relay"]
"""Kept out of the stack's compose.yaml for the dual relay, whatever dsnTarget is."""


def fake_digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


# ---------------------------------------------------------------------------- helpers


def deploy_step(program: Program) -> harness.Registration:
    return program.named("glitchtip-deploy")


def payload(program: Program) -> dict[str, str]:
    """What the deploy step hands the server: COMPOSE (its last argument), ENV and ADMIN_PASSWORD (stdin)."""
    reg = deploy_step(program)
    script, args = parse_command(reg.inputs["create"])
    assert script == "deploy-stack.sh"
    lines = dict(line.split("=", 1) for line in reg.inputs["stdin"].splitlines())
    assert set(lines) == {"ENV_B64", "ADMIN_PASSWORD"}
    return {
        "COMPOSE": args[-1],
        "ENV": base64.b64decode(lines["ENV_B64"]).decode(),
        "ADMIN_PASSWORD": lines["ADMIN_PASSWORD"],
    }


def compose_of(program: Program) -> dict:
    return yaml.safe_load(payload(program)["COMPOSE"])


def env_file(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)='([^'\\$\n]*)'", line)
        assert match, f".env line not single-quoted KEY='value': {line.split('=')[0]}"
        entries[match.group(1)] = match.group(2)
    return entries


def mib(value: str) -> int:
    assert re.fullmatch(r"\d+m", value), value
    return int(value[:-1])


def run_ok(**overrides) -> Program:
    program = run_program(prod_config(**overrides))
    assert program.error is None, program.error
    return program


@pytest.fixture(scope="module", params=[False, True], ids=["up", "preview"])
def program(request) -> Program:
    result = run_program(prod_config(smtpUrl=SMTP_URL), preview=request.param)
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="module")
def split() -> Program:
    return run_ok(serverMode="split", memoryBudgetMb=1536)


@pytest.fixture(scope="module")
def with_valkey() -> Program:
    return run_ok(valkey=True)


# ---------------------------------------------------------------------------- secrets


def test_secrets_are_random_alphanumeric_and_guarded(program):
    passwords = program.of_type("random:index/randomPassword:RandomPassword")
    assert sorted(r.name for r in passwords) == ["glitchtip-admin-password", "glitchtip-postgres-password"]
    for reg in passwords:
        assert reg.inputs["special"] is False, f"{reg.urn} allows characters that break DATABASE_URL / .env"
        assert reg.inputs["length"] >= 24
        assert not reg.inputs.get("keepers"), f"{reg.urn} has keepers: changing them regenerates the password"
        assert {"length", "special", "keepers", "upper", "lower", "numeric"} <= set(reg.ignore_changes), (
            f"{reg.urn}: editing a generation parameter would regenerate the password"
        )
    key = program.named("glitchtip-secret-key")
    assert key.type == "random:index/randomBytes:RandomBytes" and key.inputs["length"] == 32
    assert {"length", "keepers"} <= set(key.ignore_changes)
    owner = [r for r in program.registrations if r.type == "glitchtip:index:GlitchTipSecrets"]
    assert len(owner) == 1 and all(r.parent == owner[0].urn for r in passwords + [key])
    assert not program.of_type("random:index/randomId:RandomId"), "RandomId is not secret"


def test_env_holds_exactly_the_secrets_single_quoted(program):
    data = payload(program)
    env = env_file(data["ENV"])
    assert list(env) == list(ENV_KEYS)
    assert re.fullmatch(r"[0-9a-f]{64}", env["SECRET_KEY"]), "SECRET_KEY is not 32 bytes of hex"
    assert env["DATABASE_URL"] == f"postgres://glitchtip:{env['POSTGRES_PASSWORD']}@postgres:5432/glitchtip"
    assert env["EMAIL_URL"] == SMTP_URL
    assert re.fullmatch(r"[A-Za-z0-9]{12,}", data["ADMIN_PASSWORD"])


def test_email_goes_to_the_console_without_smtp():
    env = env_file(payload(run_ok())["ENV"])
    assert env["EMAIL_URL"] == "consolemail://"


# ---------------------------------------------------------------------------- no secret leaks


def _secrets(program: Program) -> list[str]:
    data = payload(program)
    env = env_file(data["ENV"])
    return [env["SECRET_KEY"], env["POSTGRES_PASSWORD"], data["ADMIN_PASSWORD"], "SmtpPassw0rdXyz"]


def test_no_secret_in_any_command_string_or_the_compose_file(program):
    needles = _secrets(program)
    for reg in program.commands:
        for field in ("create", "update", "delete"):
            text = reg.inputs.get(field) or ""
            for needle in needles:
                assert needle not in text, f"{reg.urn} puts a secret on the command line ({field})"
        assert not reg.inputs.get("environment"), f"{reg.urn} uses environment= (AcceptEnv trap)"
    compose = payload(program)["COMPOSE"]
    for needle in needles:
        assert needle not in compose, "compose.yaml holds a secret (it must only reference .env)"


def test_deploy_sends_secrets_on_stdin_only_and_logs_nothing(program):
    reg = deploy_step(program)
    assert "stdin" in reg.secret_inputs, "the deploy step's stdin (the .env) is not a secret"
    assert reg.inputs["logging"] == "none"
    assert {"stdout", "stderr"} <= set(reg.additional_secret_outputs)
    assert reg.inputs["addPreviousOutputInEnv"] is False
    assert not reg.inputs.get("triggers"), "triggers replace (create-before-delete runs the teardown)"


def test_admin_password_is_a_secret_output_and_urls_are_plain(program):
    assert program.outputs["glitchtipUrl"] == "http://127.0.0.1:8000"
    assert program.outputs["adminEmail"] == "admin@ai-admin.com"
    assert "adminPassword" in program.secret_outputs
    assert program.outputs["adminPassword"] == payload(program)["ADMIN_PASSWORD"]
    assert "glitchtipUrl" not in program.secret_outputs and "glitchtipVersion" not in program.secret_outputs


def test_no_secret_in_plain_outputs(program):
    needles = _secrets(program)
    for key, value in program.outputs.items():
        if key in program.secret_outputs:
            continue
        for needle in needles:
            assert needle not in json.dumps(value), f"output {key} leaks a secret in plain text"


# ---------------------------------------------------------------------------- the command graph


def test_deploy_runs_the_checked_in_script_after_docker(program):
    reg = deploy_step(program)
    [stack] = program.of_type("glitchtip:index:GlitchTipStack")
    assert reg.parent == stack.urn
    assert program.named("vps-docker").urn in reg.dependencies, "the deploy can run before Docker is installed"
    assert program.named("vps-preflight").urn in reg.dependencies
    compose = payload(program)["COMPOSE"]
    expected = render_script(
        "deploy-stack.sh", ["/opt/glitchtip", "glitchtip", "8000", "600", "admin@ai-admin.com", "fail", compose]
    )
    assert reg.inputs["create"] == expected and reg.inputs["update"] == expected
    assert reg.inputs["create"].splitlines()[0].endswith(f"admin@ai-admin.com fail <{len(compose)} bytes>")
    assert not {"create", "update", "delete"} & reg.secret_inputs, "the command is secret: preview could not show its diff"
    assert reg.inputs["delete"] == render_script("teardown-stack.sh", ["/opt/glitchtip", "glitchtip", "keep"])


def test_destroy_deletes_volumes_only_when_asked():
    reg = deploy_step(run_ok(deleteDataOnDestroy=True))
    assert reg.inputs["delete"] == render_script("teardown-stack.sh", ["/opt/glitchtip", "glitchtip", "delete"])


def test_adopting_the_password_is_opt_in():
    reg = deploy_step(run_ok(adoptPostgresPassword=True))
    assert " adopt " in reg.inputs["create"].splitlines()[0]


def test_a_memory_change_is_an_update_of_the_same_step_and_shows_in_the_diff():
    before, after = run_ok(), run_ok(memoryBudgetMb=1280)
    a, b = deploy_step(before), deploy_step(after)
    assert a.urn == b.urn and a.inputs["delete"] == b.inputs["delete"]
    assert a.inputs["stdin"] == b.inputs["stdin"], "the secrets changed with a memory limit"
    assert "mem_limit: 720m" in a.inputs["create"] and "mem_limit: 720m" not in b.inputs["create"], (
        "the new limit must be readable in the command string (what preview --diff shows)"
    )


# ---------------------------------------------------------------------------- compose content


def test_every_image_is_pinned_by_digest_resolved_from_the_registry(program):
    services = compose_of(program)["services"]
    for name, service in services.items():
        assert PINNED.match(service["image"]), f"service {name} runs an unpinned image {service['image']}"
    assert services["glitchtip"]["image"] == "glitchtip/glitchtip:6.2.6@" + fake_digest("glitchtip/glitchtip:6.2.6")
    assert services["postgres"]["image"] == "postgres:18.1@" + fake_digest("postgres:18.1")
    assert program.outputs["glitchtipImages"]["glitchtip"] == services["glitchtip"]["image"]


def test_configured_digests_are_used_without_a_registry_lookup(monkeypatch):
    asked = []

    def lookup(args):
        asked.append(args["name"])
        return harness.fake_registry_image(args)

    monkeypatch.setitem(harness.MOCK_CALLS, LOOKUP, lookup)
    glitchtip = "glitchtip/glitchtip:6.2.5@sha256:" + "a" * 64
    services = compose_of(run_ok(glitchtipImage=glitchtip, glitchtipVersion="6.2.5"))["services"]
    assert services["glitchtip"]["image"] == glitchtip
    assert asked == ["postgres:18.1"], f"looked up {asked}"


def test_the_glitchtip_tag_follows_glitchtip_version():
    services = compose_of(run_ok(glitchtipVersion="6.1.0"))["services"]
    assert services["glitchtip"]["image"].startswith("glitchtip/glitchtip:6.1.0@sha256:")


def test_a_registry_without_digest_fails_the_program(monkeypatch):
    monkeypatch.setitem(harness.MOCK_CALLS, LOOKUP, lambda args: {"name": args["name"], "sha256Digest": ""})
    with pytest.raises(Exception, match=r"no sha256 digest for (glitchtip/glitchtip:6\.2\.6|postgres:18\.1); set the image with its digest"):
        program = run_program(prod_config())
        assert program.error is not None
        raise program.error


@pytest.mark.parametrize("variant", ["default", "split", "valkey"])
def test_every_service_has_a_memory_limit_within_the_budget(variant, program, split, with_valkey):
    chosen, budget = {"default": (program, 1024), "split": (split, 1536), "valkey": (with_valkey, 1024)}[variant]
    services = compose_of(chosen)["services"]
    limits = {}
    for name, service in services.items():
        assert "mem_limit" in service, f"service {name} has no memory limit"
        assert service["memswap_limit"] == service["mem_limit"], f"service {name} can stretch its limit with swap"
        limits[name] = mib(service["mem_limit"])
    stack = budget - RELAY_MB  # the relay's share is reserved whatever dsnTarget is
    assert sum(limits.values()) <= stack
    assert sum(limits.values()) >= stack - 16 * len(limits), "the budget is not used"


def test_memory_limits_follow_the_plan():
    services = compose_of(run_ok(memoryBudgetMb=1536))["services"]
    plan = memory_plan("all-in-one", False, "tunnel", 1536, relay=True)
    assert plan.pop("relay") == RELAY_MB
    assert {name: mib(s["mem_limit"]) for name, s in services.items()} == plan


def test_compose_declares_the_memory_budget_for_the_policy_pack(program, split):
    """x-memory-budget-mb (ignored by compose) is what policies/rules.py checks the limits against."""
    assert compose_of(program)["x-memory-budget-mb"] == 1024 - RELAY_MB
    assert compose_of(split)["x-memory-budget-mb"] == 1536 - RELAY_MB
    assert list(compose_of(program))[:3] == ["name", "x-memory-budget-mb", "services"]
    assert "x-memory-budget-mb" not in yaml.safe_load(render_compose(_spec()))


def test_only_loopback_publishing(program, split, with_valkey):
    for chosen in (program, split, with_valkey):
        services = compose_of(chosen)["services"]
        published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
        assert published == {("glitchtip" if "glitchtip" in services else "web"): ["127.0.0.1:8000:8000"]}
        for name, service in services.items():
            assert service.get("network_mode") != "host", f"{name} shares the host network"
            assert "expose" not in service


def test_the_published_port_follows_config():
    services = compose_of(run_ok(glitchtipPort=8123))["services"]
    assert services["glitchtip"]["ports"] == ["127.0.0.1:8123:8000"]


def _app_services(services: dict) -> list[str]:
    return [n for n in ("glitchtip", "web", "worker", "migrate") if n in services]


def test_registration_and_org_creation_are_off_and_valkey_url_is_set(program, split, with_valkey):
    for chosen in (program, split, with_valkey):
        services = compose_of(chosen)["services"]
        for name in _app_services(services):
            env = services[name]["environment"]
            assert env["ENABLE_USER_REGISTRATION"] == "False", name
            assert env["ENABLE_ORGANIZATION_CREATION"] == "False", name
            assert "VALKEY_URL" in env, f"{name}: an unset VALKEY_URL falls back to redis://redis:6379/0"
            assert env["GLITCHTIP_DOMAIN"] == "http://127.0.0.1:8000"
            assert env["GLITCHTIP_MAX_EVENT_LIFE_DAYS"] == "90"
            assert env["DEFAULT_FROM_EMAIL"] == "admin@ai-admin.com"
            for secret in ("SECRET_KEY", "DATABASE_URL", "EMAIL_URL"):
                assert env[secret] == "${" + secret + ":?is missing from .env}"


def test_no_celery_variable_anywhere(program, split, with_valkey):
    for chosen in (program, split, with_valkey):
        data = payload(chosen)
        assert "CELERY" not in data["COMPOSE"].upper()
        assert "CELERY" not in data["ENV"].upper()


def test_all_in_one_by_default(program):
    services = compose_of(program)["services"]
    assert list(services) == ["postgres", "glitchtip"]
    app = services["glitchtip"]
    assert app["environment"]["SERVER_ROLE"] == "all_in_one"
    assert app["environment"]["VALKEY_URL"] == ""
    assert app["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert app["restart"] == "unless-stopped"
    assert app["volumes"] == ["uploads:/code/uploads"]


def test_web_process_cannot_creep(program):
    app = compose_of(program)["services"]["glitchtip"]
    env = app["environment"]
    assert env["MALLOC_ARENA_MAX"] == "2"
    assert 128 <= int(env["GRANIAN_WORKERS_MAX_RSS"]) < mib(app["mem_limit"]) * 0.75
    assert env["GRANIAN_WORKERS"] == "1"


def test_split_mode_runs_migrations_first(split):
    services = compose_of(split)["services"]
    assert list(services) == ["postgres", "migrate", "web", "worker"]
    migrate = services["migrate"]
    assert migrate["command"] == ["./bin/run-migrate.sh"]
    assert migrate["restart"] == "no"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, (
            f"{name} does not wait for migrate (and compose up --wait exits 1 on a finished one-shot)"
        )
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert services[name]["restart"] == "unless-stopped"
    assert services["web"]["environment"]["SERVER_ROLE"] == "web"
    assert services["worker"]["environment"]["SERVER_ROLE"] == "worker"
    assert "healthcheck" in services["web"] and "ports" not in services["worker"]


def test_valkey_variant(with_valkey):
    services = compose_of(with_valkey)["services"]
    assert list(services) == ["postgres", "valkey", "glitchtip"]
    assert services["valkey"]["image"] == "valkey/valkey:8.1@" + fake_digest("valkey/valkey:8.1")
    assert services["glitchtip"]["environment"]["VALKEY_URL"] == "redis://valkey:6379/0"
    assert services["glitchtip"]["depends_on"]["valkey"] == {"condition": "service_healthy"}
    assert "valkey-cli ping" in " ".join(services["valkey"]["healthcheck"]["test"])
    maxmemory = services["valkey"]["command"][services["valkey"]["command"].index("--maxmemory") + 1]
    assert int(maxmemory.rstrip("mb")) < mib(services["valkey"]["mem_limit"])


def test_postgres_uses_passwords_and_the_18_layout(program):
    pg = compose_of(program)["services"]["postgres"]
    env = pg["environment"]
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "trust" not in json.dumps(env)
    assert env["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:?is missing from .env}"
    assert env["POSTGRES_USER"] == env["POSTGRES_DB"] == "glitchtip"
    assert pg["volumes"] == ["pg-data:/var/lib/postgresql"]
    assert env["PGDATA"] == "/var/lib/postgresql/18/docker"
    assert pg["healthcheck"]["test"][:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"]
    command = pg["command"]
    assert command[0] == "postgres" and "shared_buffers=64MB" in command, command
    assert compose_of(program)["volumes"] == {"pg-data": {}, "uploads": {}}


def test_older_postgres_keeps_the_data_subdirectory():
    image = "postgres:16.4@sha256:" + "b" * 64
    pg = compose_of(run_ok(postgresImage=image))["services"]["postgres"]
    assert pg["image"] == image
    assert pg["volumes"] == ["pg-data:/var/lib/postgresql/data"]


def test_healthchecks_work_without_curl(program):
    test = compose_of(program)["services"]["glitchtip"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"] and "/_health/" in test[3]
    assert "curl" not in json.dumps(compose_of(program))


def test_the_project_is_named_and_the_file_is_plain_yaml(program):
    text = payload(program)["COMPOSE"]
    document = yaml.safe_load(text)
    assert document["name"] == "glitchtip"
    assert "${" not in text.replace("${POSTGRES_PASSWORD:?", "").replace("${SECRET_KEY:?", "").replace(
        "${DATABASE_URL:?", ""
    ).replace("${EMAIL_URL:?", ""), "compose.yaml interpolates something other than the .env secrets"


# ---------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "overrides,key,words",
    [
        (dict(postgresImage="postgres@sha256:" + "a" * 64), "postgresImage", "major version"),
        (dict(postgresImage="postgres:13@sha256:" + "a" * 64), "postgresImage", "14 or newer"),
        (dict(smtpUrl="smtp://u:pa'ss@smtp.example.com:25"), "smtpUrl", "percent-encode"),
        (dict(smtpUrl="smtp://u:pa$ss@smtp.example.com:25"), "smtpUrl", "percent-encode"),
        (dict(fromEmail="not-an-email"), "fromEmail", "email address"),
        (dict(adoptPostgresPassword="maybe"), "adoptPostgresPassword", "true or false"),
    ],
)
def test_config_errors_name_the_key(overrides, key, words):
    program = run_program(prod_config(**overrides))
    assert isinstance(program.error, ConfigError), program.error
    assert str(program.error).startswith(f"Config key '{key}' ") and words in str(program.error)
    assert "pa'ss" not in str(program.error) and "pa$ss" not in str(program.error), "the message echoes a secret"


def test_from_email_overrides_the_sender():
    env = compose_of(run_ok(fromEmail="glitchtip@ai-admin.com"))["services"]["glitchtip"]["environment"]
    assert env["DEFAULT_FROM_EMAIL"] == "glitchtip@ai-admin.com"


# ---------------------------------------------------------------------------- pure functions


def _spec(**overrides) -> ComposeSpec:
    values = dict(
        images=Images("glitchtip/glitchtip:6.2.6@sha256:" + "1" * 64, "postgres:18.1@sha256:" + "2" * 64),
        server_mode="all-in-one",
        valkey=False,
        port=8000,
        public_url="https://glitchtip.example.com",
        from_email="ops@example.com",
        retention_days=30,
        memory_limits_mb={"postgres": 256, "glitchtip": 768},
    )
    values.update(overrides)
    return ComposeSpec(**values)


def test_render_compose_is_pure_and_escapes_dollars():
    spec = _spec(from_email="o$ps@example.com")
    assert render_compose(spec) == render_compose(spec)
    env = yaml.safe_load(render_compose(spec))["services"]["glitchtip"]["environment"]
    assert env["DEFAULT_FROM_EMAIL"] == "o$$ps@example.com", "a literal $ must reach the container as $"
    assert env["GLITCHTIP_DOMAIN"] == "https://glitchtip.example.com"


@pytest.mark.parametrize("bad", ["it's", "back\\slash", "new\nline", "dollar$sign", ""])
def test_render_env_refuses_values_compose_would_alter(bad):
    with pytest.raises(ValueError) as error:
        render_env({"EMAIL_URL": bad})
    assert bad not in str(error.value) or bad == "", "the error echoes the value"


def test_render_env_and_stdin_round_trip():
    text = render_env(env_values("ab" * 32, "Pg0Password1234", "consolemail://"))
    assert env_file(text)["DATABASE_URL"] == "postgres://glitchtip:Pg0Password1234@postgres:5432/glitchtip"
    stdin = render_stdin(text, "Adm1nPassword99")
    lines = dict(line.split("=", 1) for line in stdin.splitlines())
    assert base64.b64decode(lines["ENV_B64"]).decode() == text and lines["ADMIN_PASSWORD"] == "Adm1nPassword99"
    with pytest.raises(ValueError):
        render_stdin(text, "has space in it")


def test_postgres_layout_by_major():
    assert postgres_layout("postgres:18.1@sha256:" + "0" * 64) == ("/var/lib/postgresql", "/var/lib/postgresql/18/docker")
    assert postgres_layout("127.0.0.1:5000/library/postgres:17-bookworm@sha256:" + "0" * 64) == (
        "/var/lib/postgresql/data",
        "/var/lib/postgresql/data",
    )
    with pytest.raises(ValueError):
        postgres_layout("postgres@sha256:" + "0" * 64)


def test_web_tuning_stays_below_the_limit():
    for limit in (512, 736, 2048):
        assert int(web_tuning(limit, all_in_one=True)["GRANIAN_WORKERS_MAX_RSS"]) < limit * 0.6
        assert int(web_tuning(limit, all_in_one=False)["GRANIAN_WORKERS_MAX_RSS"]) < limit


def test_parse_results_takes_only_key_value_lines():
    out = "version=6.2.6\ncontainer.postgres=abc123\nnoise line\nBAD KEY=x\n"
    assert parse_results(out) == {"version": "6.2.6", "container.postgres": "abc123"}


# ---------------------------------------------------------------------------- the scripts, run locally

FAKE_DOCKER = r"""#!/usr/bin/env bash
# A recording stand-in for `docker` (tests only). State files live in $FAKE_DIR.
set -u
state=$FAKE_DIR
printf '%s\n' "$*" >>"$state/calls"
if [ "$1" = compose ]; then
  shift
  file=
  while [ $# -gt 0 ]; do
    case "$1" in
      --file) file=$2; shift 2 ;;
      --project-name | --project-directory | --env-file) shift 2 ;;
      *) break ;;
    esac
  done
  sub=$1
  shift
  case "$sub" in
    version) echo "Docker Compose version v2.40.3" ;;
    config)
      if [ "${1:-}" = --services ]; then sed -n 's/^  \([a-z-]*\):$/\1/p' "$file"; fi
      [ ! -f "$state/config_fails" ] || { echo "yaml: invalid" >&2; exit 15; }
      ;;
    pull) touch "$state/pulled" ;;
    up)
      echo "$*" >>"$state/ups"
      [ ! -f "$state/up_fails" ] || exit 1
      if [ "${*: -1}" = postgres ] && [ -f "$state/recreate_postgres" ]; then echo "id-postgres-new" >"$state/id-postgres"; fi
      ;;
    restart) echo "$*" >>"$state/restarts" ;;
    ps) cat "$state/id-${*: -1}" 2>/dev/null || echo "id-${*: -1}" ;;
    down) echo "$*" >>"$state/downs" ;;
    exec)
      [ "$1" = -T ] || { echo "exec without -T" >&2; exit 9; }
      shift
      envs=()
      while [ "$1" = -e ]; do envs+=("$2"); shift 2; done
      service=$1
      script=${*: -1}
      if [ "$service" = postgres ]; then
        case "$script" in
          *"ALTER ROLE"*) touch "$state/adopted" ;;
          *)
            if [ -f "$state/badpw" ] && [ ! -f "$state/adopted" ]; then
              echo 'psql: error: connection to server at "postgres" (172.18.0.2), port 5432 failed: FATAL:  password authentication failed for user "glitchtip"' >&2
              exit 2
            fi
            echo 1
            ;;
        esac
      else
        IFS= read -r password
        printf '%s' "$password" >"$state/admin_password_received"
        printf '%s\n' "${envs[@]}" >"$state/admin_env"
        if [ -f "$state/admin_exists" ]; then
          echo "CommandError: Error: That email address is already taken." >&2
          exit 1
        fi
        touch "$state/admin_exists"
        echo "Superuser created successfully."
      fi
      ;;
    *) echo "fake docker compose: unexpected $sub" >&2; exit 3 ;;
  esac
  exit 0
fi
case "$1 ${2:-}" in
  "image inspect") [ ! -f "$state/images_missing" ] || exit 1 ;;
  "ps -aq") cat "$state/containers" 2>/dev/null ;;
  "volume ls") cat "$state/volumes" 2>/dev/null ;;
  "rm -f" | "volume rm" | "network rm") : ;;
  "network ls") : ;;
  *) echo "fake docker: unexpected $*" >&2; exit 3 ;;
esac
"""


class _GlitchTip(BaseHTTPRequestHandler):
    registration_open = False

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path == "/_health/":
            body, kind = b"ok", "text/plain"
        elif self.path == "/api/settings/":
            settings = {"enableUserRegistration": self.registration_open, "enableOrganizationCreation": False, "version": "6.2.6"}
            body, kind = json.dumps(settings).encode(), "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def glitchtip_http():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GlitchTip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _GlitchTip.registration_open = False
    yield server
    server.shutdown()
    server.server_close()


class Server:
    """A temp install dir, a fake docker on PATH, and the stdin the program would send."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.dir = root / "opt" / "glitchtip"
        self.state = root / "state"
        self.state.mkdir()
        bin_dir = root / "bin"
        bin_dir.mkdir()
        (bin_dir / "docker").write_text(FAKE_DOCKER)
        (bin_dir / "docker").chmod(0o755)
        self.path = f"{bin_dir}:{os.environ['PATH']}"
        self.compose = render_compose(_spec(port=port))
        self.env_text = render_env(env_values("cd" * 32, "PgSecretPassw0rd42", "consolemail://"))
        self.admin_password = "AdminSecretPassw0rd7"

    def stdin(self) -> str:
        return render_stdin(self.env_text, self.admin_password)

    def deploy(self, mismatch: str = "fail", stdin: str | None = None) -> subprocess.CompletedProcess:
        args = [str(self.dir), "glitchtip", str(self.port), "5", "admin@example.com", mismatch, self.compose]
        return self._run("deploy-stack.sh", args, self.stdin() if stdin is None else stdin)

    def teardown(self, data: str = "keep") -> subprocess.CompletedProcess:
        return self._run("teardown-stack.sh", [str(self.dir), "glitchtip", data], "")

    def _run(self, script: str, args: list[str], stdin: str) -> subprocess.CompletedProcess:
        env = {"PATH": self.path, "HOME": str(self.root), "LANG": "C.UTF-8", "FAKE_DIR": str(self.state)}
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", bundle(script), script, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
        )
        result.seconds = time.monotonic() - started  # type: ignore[attr-defined]
        return result

    def calls(self) -> str:
        path = self.state / "calls"
        return path.read_text() if path.exists() else ""

    def flag(self, name: str, content: str = "") -> None:
        (self.state / name).write_text(content)


@pytest.fixture
def server(tmp_path, glitchtip_http) -> Server:
    return Server(tmp_path, glitchtip_http.server_address[1])


def _secret_values(server: Server) -> list[str]:
    return ["cd" * 32, "PgSecretPassw0rd42", server.admin_password]


def test_deploy_writes_env_0600_and_compose_and_reports(server):
    result = server.deploy()
    assert result.returncode == 0, result.stderr
    env_path, compose_path = server.dir / ".env", server.dir / "compose.yaml"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert env_path.read_text() == server.env_text
    assert compose_path.read_text() == server.compose
    assert stat.S_IMODE(compose_path.stat().st_mode) == 0o640
    assert stat.S_IMODE(server.dir.stat().st_mode) == 0o750
    assert not list(server.dir.glob(".deploy.*")), "the decoded secrets were left behind"
    assert "version=6.2.6" in result.stdout.splitlines()
    assert {"container.postgres=id-postgres", "container.glitchtip=id-glitchtip"} <= set(result.stdout.splitlines())
    assert (server.state / "admin_password_received").read_text() == server.admin_password
    assert (server.state / "admin_env").read_text().strip() == "DJANGO_SUPERUSER_EMAIL=admin@example.com"
    assert "superuser admin@example.com created" in result.stderr


def test_deploy_keeps_secrets_out_of_argv_and_output(server):
    result = server.deploy()
    assert result.returncode == 0, result.stderr
    for needle in _secret_values(server):
        assert needle not in server.calls(), "a secret reached a command's argv"
        assert needle not in result.stdout and needle not in result.stderr


def test_deploy_order_database_first_then_everything_then_admin(server):
    assert server.deploy().returncode == 0
    ups = (server.state / "ups").read_text().splitlines()
    assert ups == ["-d --wait --wait-timeout 5 --remove-orphans postgres", "-d --wait --wait-timeout 5 --remove-orphans"]
    calls = server.calls()
    assert calls.index("up -d --wait") < calls.index("select 1") < calls.rindex("up -d --wait") < calls.index("createsuperuser")
    assert "exec -T -e DJANGO_SUPERUSER_EMAIL=admin@example.com glitchtip sh -c" in calls


def test_second_deploy_changes_nothing(server):
    assert server.deploy().returncode == 0
    env_path = server.dir / ".env"
    before = (env_path.read_bytes(), env_path.stat().st_mtime_ns, (server.dir / "compose.yaml").stat().st_mtime_ns)
    time.sleep(0.02)
    result = server.deploy()
    assert result.returncode == 0, result.stderr
    after = (env_path.read_bytes(), env_path.stat().st_mtime_ns, (server.dir / "compose.yaml").stat().st_mtime_ns)
    assert after == before
    assert f"{env_path} unchanged" in result.stderr and "compose.yaml unchanged" in result.stderr
    assert "already exists, left alone" in result.stderr
    assert not (server.dir / ".env.previous").exists()


def test_a_changed_env_keeps_the_previous_one(server):
    assert server.deploy().returncode == 0
    old = (server.dir / ".env").read_text()
    server.env_text = render_env(env_values("ef" * 32, "PgSecretPassw0rd42", "consolemail://"))
    result = server.deploy()
    assert result.returncode == 0, result.stderr
    previous = server.dir / ".env.previous"
    assert previous.read_text() == old and stat.S_IMODE(previous.stat().st_mode) == 0o600
    assert (server.dir / ".env").read_text() == server.env_text


def test_a_recreated_database_restarts_the_app_it_did_not_recreate(server):
    assert server.deploy().returncode == 0
    assert not (server.state / "restarts").exists(), "an unchanged deploy restarted something"
    server.flag("recreate_postgres")
    result = server.deploy()
    assert result.returncode == 0, result.stderr
    assert (server.state / "restarts").read_text().strip() == "glitchtip"
    assert "Postgres was recreated: restarting glitchtip" in result.stderr
    assert "container.postgres=id-postgres-new" in result.stdout.splitlines()


def test_missing_images_are_pulled_first(server):
    server.flag("images_missing")
    assert server.deploy().returncode == 0
    assert (server.state / "pulled").exists()
    assert server.calls().index("pull --quiet") < server.calls().index("up -d")


def test_present_images_are_not_pulled(server):
    result = server.deploy()
    assert not (server.state / "pulled").exists()
    assert "nothing pulled" in result.stderr


def test_wrong_postgres_password_stops_with_the_fix_not_a_hang(server):
    server.flag("badpw")
    result = server.deploy()
    assert result.returncode == 1
    assert result.seconds < 20  # type: ignore[attr-defined]
    assert "initialised with another password" in result.stderr
    assert "pulumi config set adoptPostgresPassword true && pulumi up" in result.stderr
    ups = (server.state / "ups").read_text().splitlines()
    assert ups == ["-d --wait --wait-timeout 5 --remove-orphans postgres"], "GlitchTip was restarted against a database it cannot log in to"
    assert "createsuperuser" not in server.calls()


def test_adopting_the_password_alters_the_role_and_carries_on(server):
    server.flag("badpw")
    result = server.deploy(mismatch="adopt")
    assert result.returncode == 0, result.stderr
    assert (server.state / "adopted").exists()
    assert "Postgres now accepts the stack's password" in result.stderr
    assert "PgSecretPassw0rd42" not in server.calls()


def test_open_registration_fails_the_deploy(server):
    _GlitchTip.registration_open = True
    result = server.deploy()
    assert result.returncode == 1
    assert "sign-up is still open" in result.stderr


def test_a_failed_up_names_the_way_to_look(server):
    server.flag("up_fails")
    result = server.deploy()
    assert result.returncode == 1
    assert "did not get healthy within 5s" in result.stderr and "docker compose logs" in result.stderr


@pytest.mark.parametrize(
    "stdin,message",
    [
        ("ADMIN_PASSWORD=Abcdefghijkl1\n", "stdin did not carry ENV_B64"),
        ("ENV_B64=eA==\nADMIN_PASSWORD=short\n", "ADMIN_PASSWORD must be 12+"),
        ("SOMETHING=1\n", "unexpected line 'SOMETHING=...'"),
    ],
)
def test_a_bad_payload_is_refused(server, stdin, message):
    result = server.deploy(stdin=stdin)
    assert result.returncode == 1 and message in result.stderr
    assert not (server.dir / ".env").exists()


def test_an_argument_that_is_not_a_compose_file_is_refused(server):
    server.compose = "not: yaml of a compose project\n"
    result = server.deploy()
    assert result.returncode == 1 and "the COMPOSE_YAML argument is not a compose file" in result.stderr
    assert not (server.dir / "compose.yaml").exists()


def test_teardown_keeps_volumes_and_env_by_default(server):
    assert server.deploy().returncode == 0
    server.flag("containers", "id-postgres\nid-glitchtip\n")
    result = server.teardown("keep")
    assert result.returncode == 0, result.stderr
    assert (server.state / "downs").read_text().strip() == "--remove-orphans"
    assert (server.dir / ".env").exists() and (server.dir / "compose.yaml").exists()
    assert result.stdout.strip() == "data=kept"
    assert "bin/backup.sh: BackupJob's removal, which runs before this step, already took the final set" in result.stderr


def test_teardown_deletes_volumes_when_asked(server):
    assert server.deploy().returncode == 0
    server.flag("containers", "id-postgres\n")
    result = server.teardown("delete")
    assert result.returncode == 0, result.stderr
    assert (server.state / "downs").read_text().strip() == "--remove-orphans --volumes"
    assert not (server.dir / ".env").exists() and not (server.dir / "compose.yaml").exists()
    assert result.stdout.strip() == "data=deleted"


def _backup_script(server: Server, rc: int) -> Path:
    script = server.dir / "bin" / "backup.sh"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\necho "$@" >"{server.state}/backup_args"\nexit {rc}\n')
    script.chmod(0o755)
    return script


def test_teardown_takes_a_final_backup_first(server):
    assert server.deploy().returncode == 0
    server.flag("containers", "id-postgres\n")
    _backup_script(server, 0)
    result = server.teardown("delete")
    assert result.returncode == 0, result.stderr
    assert (server.state / "backup_args").read_text().strip() == "--final"


def test_a_failed_final_backup_stops_a_data_deleting_destroy(server):
    assert server.deploy().returncode == 0
    server.flag("containers", "id-postgres\n")
    _backup_script(server, 1)
    result = server.teardown("delete")
    assert result.returncode == 1 and "nothing was stopped or deleted" in result.stderr
    assert not (server.state / "downs").exists()
    assert (server.dir / ".env").exists()
    kept = server.teardown("keep")
    assert kept.returncode == 0 and "volumes are kept" in kept.stderr


def test_teardown_twice_is_quiet(server):
    result = server.teardown("keep")
    assert result.returncode == 0, result.stderr
    assert "nothing left to remove, skipped" in result.stderr
    assert not (server.state / "downs").exists()


def test_teardown_without_files_falls_back_to_labels(server):
    server.flag("containers", "id-postgres\n")
    server.flag("volumes", "glitchtip_pg-data\n")
    result = server.teardown("keep")
    assert result.returncode == 0, result.stderr
    assert "rm -f id-postgres" in server.calls()
    assert "volume rm" not in server.calls()
