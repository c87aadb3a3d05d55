"""The test server's PM2 app and the GlitchTip stack as the AppDsn and relay tests use them.

Shared by tests/integration/test_app_dsn.py and test_relay.py: where the app is, how it is
made to raise an error, how its processes and environment are read, the program limited to
the stack and the steps under test, and a GlitchTip project made through the SSH tunnel.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from components.app_dsn import render_stdin
from components.glitchtip.client import GlitchTipClient
from components.glitchtip.tunnel import SshTarget, open_tunnel
from tests.harness import Program
from tests.integration.testhost import wait_until
from tests.integration.programs import ADMIN, server_program

APP_DIR, ENV_FILE = "/opt/ai-admin", "/opt/ai-admin/.env"
BACKUP = f"{ENV_FILE}.glitchtip-migration.orig"
APPS = {"ai-admin-api": 3000, "ai-admin-worker-v2": 3001}
STACK_DIR, PROJECT = "/opt/glitchtip", "glitchtip"
CLEAN_STACK = (
    f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={PROJECT}"
    " --filter label=com.docker.compose.project=glitchtip-relay) >/dev/null 2>&1;"
    f" docker volume rm {PROJECT}_pg-data {PROJECT}_uploads >/dev/null 2>&1;"
    f" docker network rm {PROJECT}_default >/dev/null 2>&1; rm -rf {STACK_DIR}; true"
)
"""Removes the stack (and a relay) with its data: neither before nor after a module."""
# The app as the testhost starts it: PM2 started from a clean environment (no SENTRY_DSN saved).
FRESH_APP = f"cd {APP_DIR} && pm2 delete all >/dev/null 2>&1; env -u SENTRY_DSN pm2 start ecosystem.config.js >/dev/null && pm2 save >/dev/null"


def program_for(testhost, target: str, glitchtip_dsn: str | None = None, token: str = "", *,
                sentry_dsn: str | None = None, names: tuple[str, ...] = ("glitchtip", "app-dsn"), **config) -> Program:
    """The program aimed at the test server, limited to NAMES (the stack and AppDsn by default).
    The API token the program wires from its provisioned project is a mock value here: the
    cutover gets `token` instead (empty: the gate checks ingest only)."""
    program = server_program(
        testhost,
        *names,
        sentryDsn=sentry_dsn or testhost.sentry.dsn,
        appPm2Apps=[],  # every PM2 process in /opt/ai-admin
        dsnTarget=target,
        glitchtipDsn=glitchtip_dsn,
        **config,
    )
    return with_token(program, token) if target != "sentry" else program


def with_token(program: Program, token: str) -> Program:
    """The program with an API token on the cutover's stdin, as the provisioning will wire it."""
    step = program.named("app-dsn-set")
    lines = dict(line.split("=", 1) for line in step.inputs["stdin"].splitlines())
    stdin = render_stdin(lines["DSN"], lines["SENTRY_DSN"], token, lines.get("GLITCHTIP_DSN"))
    edited = dataclasses.replace(step, inputs={**step.inputs, "stdin": stdin})
    return Program([edited if r.urn == step.urn else r for r in program.registrations], program.outputs,
                   program.secret_outputs, program.error)


def steps_of(steps) -> list[tuple[str, str]]:
    """[(resource name, operation)] of the engine's steps."""
    return [(s.urn.rsplit("::", 1)[1], s.operation) for s in steps]


def only(steps, name: str, operation: str):
    assert steps_of(steps) == [(name, operation)], steps_of(steps)
    return steps[0]


def file_facts(testhost, path: str) -> tuple[bytes, str]:
    """(bytes, 'mode uid:gid mtime-with-nanoseconds inode')."""
    return testhost.read_file(path), testhost.run(f"stat -c '%a %u:%g %y %i' {path}").stdout.strip()


def pm2_apps(testhost) -> dict[str, dict]:
    """name -> {pid, status, env} of the app's PM2 processes."""
    out = testhost.run("pm2 jlist").stdout
    line = next(x for x in reversed(out.splitlines()) if x.startswith("["))
    return {p["name"]: {"pid": p["pid"], "status": p["pm2_env"]["status"], "env": p["pm2_env"].get("env", {})}
            for p in json.loads(line) if p["name"] in APPS}


def app_environ(testhost, pid: int) -> dict[str, str]:
    """The environment variables a running app process has (its /proc environ; PM2's own lowercase fields left out)."""
    raw = testhost.run(f"cat /proc/{pid}/environ", timeout=30).stdout
    pairs = (item.split("=", 1) for item in raw.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k == k.upper()}


def app_health(testhost, port: int = 3000) -> dict:
    """The app's /health (it names the DSN's host, never its key), once it answers after a restart."""
    return json.loads(testhost.run(f"i=0; until curl -fsS http://127.0.0.1:{port}/health; do i=$((i+1)); "
                                   "[ $i -lt 100 ] || exit 1; sleep 0.2; done", timeout=60).stdout)


def boom(testhost, marker: str, port: int = 3000) -> dict:
    """Make the app capture an error carrying MARKER (it flushes before answering); waits for it to listen."""
    return json.loads(testhost.run(f"i=0; until curl -sS --max-time 20 'http://127.0.0.1:{port}/boom?marker={marker}'; do "
                                   "i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.2; done", timeout=60).stdout)


def restart_glitchtip(testhost) -> None:
    """Start the stack's stopped glitchtip service again and wait until it answers /_health/."""
    testhost.run(f"cd {STACK_DIR} && docker compose start glitchtip </dev/null", timeout=120)
    testhost.run("i=0; until curl -fsS http://127.0.0.1:8000/_health/ >/dev/null; do i=$((i+1)); "
                 "[ $i -lt 300 ] || exit 1; sleep 0.2; done", timeout=90)


def new_marker(tag: str) -> str:
    return f"{tag}{secrets.token_hex(4)}"


def admin_password(testhost) -> str:
    """The admin password the stack's deploy step reads on stdin."""
    stdin = program_for(testhost, "sentry").named("glitchtip-deploy").inputs["stdin"]
    return dict(line.split("=", 1) for line in stdin.splitlines())["ADMIN_PASSWORD"]


@contextmanager
def glitchtip_project(testhost, token_name: str) -> Iterator[dict]:
    """A project in the deployed stack's GlitchTip (the provisioning's job, done here through
    the tunnel): {"dsn", "token", "api"} while the tunnel is open."""
    target = SshTarget(host=testhost.address, host_key=testhost.host_key, private_key=testhost.private_key)
    with open_tunnel(target, 8000) as url:
        session = GlitchTipClient.login_session(url, ADMIN, admin_password(testhost))
        token = session.create_api_token(token_name)["token"]
        api = GlitchTipClient(url, token)
        api.create_organization("Acme")
        api.create_team("acme", "backend")
        api.create_project("acme", "backend", "ai-admin", "node")
        dsn = api.keys("acme", "ai-admin")[0]["dsn"]["public"]
        assert dsn.startswith("http://") and "@127.0.0.1:8000/" in dsn, dsn
        yield {"dsn": dsn, "token": token, "api": api, "url": url}


class Ends:
    """Where the app's errors land: the Sentry stand-in's log and GlitchTip's API."""

    def __init__(self, testhost, api: GlitchTipClient) -> None:
        self.testhost, self.api = testhost, api

    def at_sentry(self, *markers: str) -> bool:
        bodies = [entry["body"] for entry in self.testhost.sentry.received()]
        return any(m.encode() in body for body in bodies for m in markers)

    def at_glitchtip(self, *markers: str) -> bool:
        titles = " ".join(i["title"] for i in self.api.search_issues("acme", "ai-admin", limit=20, sort="-last_seen"))
        return any(m in titles for m in markers)

    def lands(self, where: str, port: int = 3000, seconds: float = 20) -> None:
        """The app's next error arrives at WHERE (sentry, glitchtip or both), and not at the other end."""
        marker = new_marker(where)
        boom(self.testhost, marker, port)
        ends = {"sentry": self.at_sentry, "glitchtip": self.at_glitchtip}
        for name in ends if where == "both" else (where,):
            assert wait_until(lambda: ends[name](marker), seconds), f"the app's error {marker} (port {port}) did not reach {name}"
        if where != "both":
            time.sleep(1)  # anything sent to the other end would be there by now: the app flushed before answering
            other = next(name for name in ends if name != where)
            assert not ends[other](marker), f"the app's error {marker} also reached {other}"
