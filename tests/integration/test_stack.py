"""GlitchTipStack on the throwaway server, applied by the engine stand-in as `pulumi up`/`destroy` would.

The program runs under mocks with the test server's address, host key and the
digest-pinned stand-in images; tests/integration/engine.py then runs the deploy step's
`create`/`update` (with its stdin) and, on destroy, the `delete` stored in state, over
SSH like pulumi-command. GlitchTip is the stand-in image (tests/standins/glitchtip),
Postgres is Debian's PostgreSQL under the postgres:18.1 name with 18's volume layout,
and `docker compose` is the testhost's shim over docker-compose v1: this proves the
scripts, the compose file, the ordering and compose's recreate-only-what-changed, not
GlitchTip's own code or compose v2.

The tests of this module share one server and one engine state, and run in order.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import re
import socket
import time

import pytest
import yaml

from components.remote import parse_command, render_script
from components.stack import render_stdin
from tests.harness import Program, Registration
from tests.integration.programs import ADMIN, server_program
from tests.integration.engine import Engine, StepFailed, StepResult

pytestmark = pytest.mark.integration

PROJECT = "glitchtip"
DIR = "/opt/glitchtip"
CLEAN = (
    f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={PROJECT}) >/dev/null 2>&1;"
    f" docker volume rm {PROJECT}_pg-data {PROJECT}_uploads >/dev/null 2>&1; rm -rf {DIR}; true"
)


# ---------------------------------------------------------------------------- helpers


def stack_program(testhost, **overrides) -> Program:
    """The program for the test server, limited to GlitchTipSecrets and GlitchTipStack."""
    return server_program(testhost, "glitchtip", **overrides)


def deploy_of(program: Program) -> Registration:
    return program.named("glitchtip-deploy")


def secrets_of(program: Program) -> tuple[str, str]:
    """(.env text, admin password) from the deploy step's stdin."""
    lines = dict(line.split("=", 1) for line in deploy_of(program).inputs["stdin"].splitlines())
    return base64.b64decode(lines["ENV_B64"]).decode(), lines["ADMIN_PASSWORD"]


def compose_of(program: Program) -> str:
    return parse_command(deploy_of(program).inputs["create"])[1][-1]


def variant(program: Program, *, compose=None, env=None, mismatch=None) -> Program:
    """The same program with the deploy step's compose file, .env or mismatch mode edited,
    rendered exactly as the component renders them."""
    reg = deploy_of(program)
    _, args = parse_command(reg.inputs["create"])
    env_text, admin_password = secrets_of(program)
    args = [*args[:5], mismatch or args[5], compose(args[6]) if compose else args[6]]
    command = render_script("deploy-stack.sh", args)
    stdin = render_stdin(env(env_text) if env else env_text, admin_password)
    edited = dataclasses.replace(reg, inputs={**reg.inputs, "create": command, "update": command, "stdin": stdin})
    return Program([edited if r.urn == reg.urn else r for r in program.registrations], program.outputs,
                   program.secret_outputs, program.error)


def set_limit(service: str, mb: int):
    def edit(compose: str) -> str:
        header = "".join(line for line in compose.splitlines(keepends=True) if line.startswith("#"))
        doc = yaml.safe_load(compose)
        doc["services"][service]["mem_limit"] = doc["services"][service]["memswap_limit"] = f"{mb}m"
        return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=4096)
    return edit


def postgres_password(env_text: str) -> str:
    return re.search(r"^POSTGRES_PASSWORD='([^']+)'$", env_text, re.M).group(1)


def with_password(password: str):
    return lambda env_text: env_text.replace(postgres_password(env_text), password)


def one(steps: list[StepResult], operation: str) -> StepResult:
    assert [s.operation for s in steps] == [operation], [(s.urn, s.operation) for s in steps]
    return steps[0]


def containers(testhost) -> dict[str, dict]:
    """service -> {id, started, running, memory, health, image, ports} for the project's containers."""
    ids = testhost.run(
        f"docker ps -a -q --no-trunc --filter label=com.docker.compose.project={PROJECT}"
    ).stdout.split()
    if not ids:
        return {}
    found = {}
    for c in json.loads(testhost.run("docker inspect " + " ".join(ids)).stdout):
        found[c["Config"]["Labels"]["com.docker.compose.service"]] = {
            "id": c["Id"],
            "started": c["State"]["StartedAt"],
            "running": c["State"]["Running"],
            "memory": c["HostConfig"]["Memory"],
            "health": (c["State"].get("Health") or {}).get("Status"),
            "image": c["Config"]["Image"],
            "ports": c["HostConfig"]["PortBindings"],
        }
    return found


def file_facts(testhost, path: str) -> tuple[bytes, str]:
    """(bytes, 'mode uid mtime-with-nanoseconds')."""
    return testhost.read_file(path), testhost.run(f"stat -c '%a %u %y' {path}").stdout.strip()


def volumes(testhost) -> list[str]:
    return sorted(testhost.run(
        f"docker volume ls -q --filter label=com.docker.compose.project={PROJECT}").stdout.split())


def http(testhost, path: str) -> str:
    return testhost.run(f"curl -fsS --max-time 10 http://127.0.0.1:8000{path}").stdout


def superusers(testhost) -> list[str]:
    """Superuser emails, read from the database (the stand-in keeps rows as jsonb in GlitchTip's table names)."""
    out = testhost.run(
        f"cd {DIR} && docker compose exec -T postgres psql -U glitchtip -d glitchtip -tAc "
        "\"select data->>'email' from users_user where (data->>'is_superuser')::boolean order by id\" </dev/null"
    ).stdout
    return out.split()


LOGIN = r"""
import http.cookiejar, json, sys, urllib.error, urllib.request
password = sys.stdin.readline().strip()
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
base = "http://127.0.0.1:8000"
opener.open(base + "/_allauth/browser/v1/config", timeout=10).read()
csrf = next(c.value for c in jar if c.name == "csrftoken")
body = json.dumps({"email": sys.argv[1], "password": password}).encode()
req = urllib.request.Request(base + "/_allauth/browser/v1/auth/login", data=body, method="POST",
                             headers={"Content-Type": "application/json", "X-CSRFToken": csrf})
try:
    print(opener.open(req, timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


def login_status(testhost, password: str) -> str:
    """HTTP status of an allauth login as the admin, on the server; the password goes over stdin."""
    script = base64.b64encode(LOGIN.encode()).decode()
    return testhost.run(f"python3 -c \"$(echo {script} | base64 -d)\" {ADMIN}", stdin=password + "\n").stdout.strip()


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def host(testhost):
    """The shared server, without any trace of this module's stack before and after."""
    testhost.ssh(CLEAN)
    yield testhost
    testhost.ssh(CLEAN)


@pytest.fixture(scope="module")
def base(host) -> Program:
    return stack_program(host)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def first_up(host, base, engine) -> StepResult:
    return one(engine.up(base), "create")


# ---------------------------------------------------------------------------- tests


def test_up_is_healthy_with_an_admin_and_closed_sign_up(host, base, first_up):
    found = containers(host)
    assert set(found) == {"postgres", "glitchtip"}
    for service, facts in found.items():
        assert facts["running"] and facts["health"] == "healthy", f"{service}: {facts}"
    assert found["glitchtip"]["image"] == host.images["glitchtip"]
    assert found["postgres"]["image"] == host.images["postgres"]
    results = dict(line.split("=", 1) for line in first_up.stdout.splitlines())
    assert results["container.glitchtip"] == found["glitchtip"]["id"]
    assert results["container.postgres"] == found["postgres"]["id"]
    assert results["version"], "no version reported"
    assert http(host, "/_health/") == "ok"
    settings = json.loads(http(host, "/api/settings/"))
    assert settings["enableUserRegistration"] is False and settings["enableOrganizationCreation"] is False
    assert superusers(host) == [ADMIN]
    _, admin_password = secrets_of(base)
    assert login_status(host, admin_password) == "200", "the admin cannot log in with the stack's password"
    assert login_status(host, "Wrong0Password0123") == "400"
    assert f"superuser {ADMIN} created" in first_up.stderr


def test_secrets_file_is_0600_and_nothing_secret_was_printed(host, base, first_up):
    env_text, admin_password = secrets_of(base)
    data, facts = file_facts(host, f"{DIR}/.env")
    assert data.decode() == env_text
    assert facts.split()[:2] == ["600", "0"]
    assert host.read_file(f"{DIR}/compose.yaml").decode() == compose_of(base)
    for needle in (postgres_password(env_text), admin_password, env_text.split("SECRET_KEY='")[1][:64]):
        assert needle not in first_up.stdout and needle not in first_up.stderr
    assert host.run(f"ls -a {DIR}").stdout.split() == [".", "..", ".env", "compose.yaml"]


def test_memory_limits_and_loopback_only(host, first_up):
    found = containers(host)
    plan = yaml.safe_load(host.read_file(f"{DIR}/compose.yaml"))["services"]
    for service, facts in found.items():
        assert facts["memory"] == int(plan[service]["mem_limit"][:-1]) * 1024 * 1024, service
    assert found["glitchtip"]["ports"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}
    assert not found["postgres"]["ports"]
    assert "127.0.0.1:8000" in host.run("ss -Hltn 'sport = :8000'").stdout
    with pytest.raises(OSError):  # from outside, on the server's own address, nothing answers
        socket.create_connection((host.address, 8000), timeout=3).close()


def test_postgres_data_lives_in_the_18_layout(host, first_up):
    out = host.run(f"docker run --rm -v {PROJECT}_pg-data:/v {host.images['busybox']} ls /v/18/docker").stdout
    assert "PG_VERSION" in out.split()


def test_second_up_changes_nothing(host, base, engine, first_up):
    before = containers(host), file_facts(host, f"{DIR}/.env"), file_facts(host, f"{DIR}/compose.yaml")
    assert engine.up(base) == [], "an unchanged program ran the deploy again"
    rerun = one(engine.reapply(), "update")  # and the script itself, run again, changes nothing
    after = containers(host), file_facts(host, f"{DIR}/.env"), file_facts(host, f"{DIR}/compose.yaml")
    assert after == before, "a second identical deploy touched a container or a file"
    assert "already exists, left alone" in rerun.stderr
    assert ".env unchanged" in rerun.stderr and "compose.yaml unchanged" in rerun.stderr
    assert "nothing pulled" in rerun.stderr
    assert rerun.stdout == first_up.stdout


def test_a_new_memory_limit_recreates_only_that_service(host, base, engine, first_up):
    before = containers(host)
    limit = int(yaml.safe_load(compose_of(base))["services"]["glitchtip"]["mem_limit"][:-1]) - 32
    one(engine.up(variant(base, compose=set_limit("glitchtip", limit))), "update")
    after = containers(host)
    assert after["postgres"]["id"] == before["postgres"]["id"]
    assert after["postgres"]["started"] == before["postgres"]["started"], "Postgres was restarted"
    assert after["glitchtip"]["id"] != before["glitchtip"]["id"]
    assert after["glitchtip"]["memory"] == limit * 1024 * 1024
    assert after["glitchtip"]["health"] == "healthy"
    one(engine.up(base), "update")  # back to the program's own file
    assert containers(host)["postgres"]["started"] == before["postgres"]["started"]


def test_a_wrong_postgres_password_fails_clearly_and_fast(host, base, engine, first_up):
    before = containers(host)
    env_text, _ = secrets_of(base)
    started = time.monotonic()
    with pytest.raises(StepFailed) as failed:
        engine.up(variant(base, env=with_password("Different0Password0Value0123")))
    assert time.monotonic() - started < 120, "the mismatch was found only after a long wait"
    message = failed.value.result.stderr
    assert "initialised with another password" in message, message[-3000:]
    assert "pulumi config set adoptPostgresPassword true && pulumi up" in message
    after = containers(host)
    assert after["glitchtip"]["id"] == before["glitchtip"]["id"], "GlitchTip was recreated against a database it cannot use"
    assert after["glitchtip"]["running"]
    assert host.read_file(f"{DIR}/.env.previous").decode() == env_text
    restored = one(engine.reapply(), "update")  # state still holds the program's inputs
    assert "Postgres was recreated: restarting glitchtip" in restored.stderr
    assert http(host, "/_health/") == "ok"
    assert json.loads(http(host, "/api/settings/"))["enableUserRegistration"] is False


def test_adopting_a_new_postgres_password(host, base, engine, first_up):
    adopting = stack_program(host, adoptPostgresPassword=True)
    step = one(engine.up(variant(adopting, env=with_password("Adopted0Password0Value0456"))), "update")
    assert "Postgres now accepts the stack's password" in step.stderr
    assert superusers(host) == [ADMIN]
    step = one(engine.up(adopting), "update")  # the program's own password, adopted back
    assert "Postgres now accepts the stack's password" in step.stderr
    step = one(engine.up(base), "update")
    assert "Postgres accepts the password in .env" in step.stderr


def test_split_mode_migrates_then_serves(host, engine, first_up):
    split = stack_program(host, serverMode="split", memoryBudgetMb=1536)
    one(engine.up(split), "update")
    found = containers(host)
    assert set(found) == {"postgres", "migrate", "web", "worker"}, "the all-in-one container was not removed"
    assert not found["migrate"]["running"]
    assert found["web"]["health"] == "healthy" and found["worker"]["running"]
    assert found["web"]["ports"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}
    assert superusers(host) == [ADMIN]
    rerun = one(engine.reapply(), "update")
    assert "already exists, left alone" in rerun.stderr
    assert containers(host)["web"]["id"] == found["web"]["id"]


def test_destroy_keeps_the_volumes_and_their_data(host, base, engine, first_up):
    one(engine.up(base), "update")  # back to all-in-one
    step = one(engine.destroy(), "delete")
    assert step.stdout.strip() == "data=kept"
    assert containers(host) == {}
    assert volumes(host) == [f"{PROJECT}_pg-data", f"{PROJECT}_uploads"]
    assert host.stat(f"{DIR}/.env").st_mode & 0o777 == 0o600
    up = one(engine.up(base), "create")
    assert superusers(host) == [ADMIN], "the data did not survive destroy + up"
    assert "already exists, left alone" in up.stderr


def test_destroy_with_delete_data_removes_volumes(host, engine, first_up):
    one(engine.up(stack_program(host, deleteDataOnDestroy=True)), "update")
    step = one(engine.destroy(), "delete")
    assert step.stdout.strip() == "data=deleted"
    assert containers(host) == {} and volumes(host) == []
    assert host.ssh(f"test -e {DIR}/.env").rc == 1
    again = host.ssh(render_script("teardown-stack.sh", [DIR, PROJECT, "delete"]))
    assert again.rc == 0 and "nothing left to remove, skipped" in again.stderr
