"""The operator tools (scripts/) run for real against the throwaway server, over SSH and the tunnel.

The server gets a small compose project of its own (`gtops`, in /opt/gtops, GlitchTip's stand-in
image on 127.0.0.1:18000 with the Postgres stand-in behind it), apart from what the program's
own tests deploy as `glitchtip`; it is removed at the end of the module. The tools are run
as an operator runs them: `python scripts/<tool>.py` with flags and environment variables,
reaching GlitchTip only through the SSH tunnel to the server's loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from components.glitchtip.client import GlitchTipClient
from components.glitchtip.tunnel import SshTarget, open_tunnel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROJECT, DIR, PORT, BACKUPS = "gtops", "/opt/gtops", 18000, "/var/backups/gtops"
ADMIN = "ops@example.com"


def _compose(images: dict[str, str]) -> str:
    return f"""name: {PROJECT}
services:
  postgres:
    image: {images['postgres']}
    environment:
      POSTGRES_USER: glitchtip
      POSTGRES_DB: glitchtip
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?}}
    volumes: ["pg-data:/var/lib/postgresql"]
    mem_limit: 256m
    memswap_limit: 256m
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "glitchtip"]
      interval: 2s
      retries: 30
  glitchtip:
    image: {images['glitchtip']}
    command: ["sh", "-c", "python3 -m glitchtip_standin.migrate && exec python3 -m glitchtip_standin.start"]
    environment:
      DATABASE_URL: ${{DATABASE_URL:?}}
      DJANGO_SUPERUSER_EMAIL: {ADMIN}
      DJANGO_SUPERUSER_PASSWORD: ${{ADMIN_PASSWORD:?}}
      GLITCHTIP_DOMAIN: http://127.0.0.1:{PORT}
      ENABLE_USER_REGISTRATION: "False"  # GlitchTip's default is True: status reports open sign-up
    ports: ["127.0.0.1:{PORT}:8000"]
    depends_on:
      postgres: {{condition: service_healthy}}
    mem_limit: 192m
    memswap_limit: 192m
volumes:
  pg-data: {{}}
"""


def _backup_set(testhost, created: datetime) -> None:
    name = f"glitchtip-{created:%Y%m%dT%H%M%SZ}"
    path = f"{BACKUPS}/{name}"
    testhost.run(f"rm -rf {BACKUPS} && mkdir -p -m 0700 {path} && cd {path} && head -c 4096 /dev/urandom > db.dump"
                 " && : > uploads.tar.gz && : > config.tar"
                 f" && printf 'format=1\\nname={name}\\ncreated_at={created:%Y-%m-%dT%H:%M:%SZ}\\nglitchtip_version=6.2.6\\n' > manifest.txt"
                 " && sha256sum db.dump uploads.tar.gz config.tar manifest.txt > SHA256SUMS")


@pytest.fixture(scope="module")
def ops(testhost) -> Iterator[dict]:
    password = secrets.token_hex(16)
    db_password = secrets.token_hex(16)
    testhost.run(f"mkdir -p -m 0700 {DIR}")
    testhost.put_file(f"{DIR}/compose.yaml", _compose(testhost.images), 0o644)
    testhost.put_file(f"{DIR}/.env", f"POSTGRES_PASSWORD='{db_password}'\nADMIN_PASSWORD='{password}'\n"
                      f"DATABASE_URL='postgres://glitchtip:{db_password}@postgres:5432/glitchtip'\n", 0o600)
    try:
        testhost.run(f"cd {DIR} && docker compose up -d --wait </dev/null", timeout=300)
        testhost.run(f"i=0; until curl -fsS http://127.0.0.1:{PORT}/_health/ >/dev/null; do i=$((i+1)); "
                     "[ $i -lt 150 ] || exit 1; sleep 0.2; done", timeout=60)
        testhost.run(f"cd {DIR} && docker compose exec -T glitchtip python3 -m glitchtip_standin.manage createsuperuser --noinput </dev/null")
        target = SshTarget(host=testhost.address, host_key=testhost.host_key, private_key=testhost.private_key)
        with open_tunnel(target, PORT) as url:
            api = GlitchTipClient.login_session(url, ADMIN, password)
            api.create_organization("Ops")
            api.create_team("ops", "backend")
            project = api.create_project("ops", "backend", "ai-admin", "node")
            beat = api.create_monitor("ops", {"monitorType": "Heartbeat", "name": "ai-admin backup heartbeat", "url": "",
                                              "expectedStatus": None, "expectedBody": "", "interval": 90000, "timeout": None,
                                              "project": str(project["id"])})
            api.ping_heartbeat("ops", beat["endpointID"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLITCHTIP_")}
        env.update(GLITCHTIP_ADMIN_EMAIL=ADMIN, GLITCHTIP_ADMIN_PASSWORD=password, GLITCHTIP_NO_PULUMI="1")
        ssh = ["--ssh-host", testhost.address, "--ssh-host-key", testhost.host_key,
               "--ssh-key-file", str(testhost.private_key_path), "--remote-port", str(PORT)]
        yield {"env": env, "ssh": ssh, "target": target, "password": password}
    finally:
        testhost.ssh(f"cd {DIR} && docker compose down -v </dev/null; rm -rf {DIR} {BACKUPS}", timeout=120)


def tool(ops: dict, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *ops["ssh"], *args],
                          env=ops["env"], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def standin_state(ops: dict) -> dict:
    with open_tunnel(ops["target"], PORT) as url:
        return GlitchTipClient(url).request("GET", "/_standin/state").body


def test_verify_capture_through_the_tunnel(ops: dict) -> None:
    done = tool(ops, "verify_capture", "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6/6 checks arrived complete." in done.stdout
    assert "(ops/ai-admin)" in done.stderr  # discovered: the only organization and project
    assert ops["password"] not in done.stdout + done.stderr


def test_load_test_counts_what_the_server_stored(ops: dict) -> None:
    before = standin_state(ops)["eventsReceived"]
    done = tool(ops, "load_test", "-n", "200", "--rate", "100", "--concurrency", "4", "--json", "--no-progress",
                "--quiet", "10", "--keep-issues")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["visible"] == report["captured"] == 200 and report["sdkLost"] == {}
    assert standin_state(ops)["eventsReceived"] - before == 200
    assert report["latencySeconds"]["max"] is not None


def test_status_over_ssh_then_a_stopped_container_and_an_old_backup(ops: dict, testhost) -> None:
    args = ["--compose-project", PROJECT, "--install-dir", DIR, "--backup-dir", BACKUPS,
            "--services", "postgres,glitchtip", "--expect-dsn-target", "sentry"]
    _backup_set(testhost, datetime.now(timezone.utc) - timedelta(hours=3))
    healthy = tool(ops, "status", *args)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    for line in ("container glitchtip", "container postgres", "backup", "heartbeat ai-admin backup heartbeat", "app DSN"):
        assert any(row.startswith(line + " ") and " ok " in row for row in healthy.stdout.splitlines()), healthy.stdout
    assert "points at 127.0.0.1:9000 (not GlitchTip" in healthy.stdout  # the app still reports to the Sentry stand-in
    assert testhost.sentry.key not in healthy.stdout + healthy.stderr

    _backup_set(testhost, datetime.now(timezone.utc) - timedelta(days=3))
    testhost.run(f"cd {DIR} && docker compose stop postgres </dev/null", timeout=120)
    try:
        broken = tool(ops, "status", *args, "--json")
        report = json.loads(broken.stdout)
        assert broken.returncode == 1
        problems = {c["check"]: c["detail"] for c in report["checks"] if c["level"] == "PROBLEM"}
        assert problems["container postgres"].startswith("exited")
        assert "older than 26 h" in problems["backup"]
    finally:
        testhost.run(f"cd {DIR} && docker compose start postgres </dev/null", timeout=120)
