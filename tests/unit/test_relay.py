"""dsnTarget=dual: the nginx relay (components/relay.py) under mocks, its config, and its scripts."""

from __future__ import annotations

import base64
import gc
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from components import relay
from components.remote import parse_command
from components.settings import MEMORY_FLOOR_MB, ConfigError, memory_plan
from tests import harness

SAAS_KEY = "f0e84f5737f802e81f871ed4cad0abcd"
SAAS_PROJECT = "4510346297081936"
GT_KEY = "0123456789abcdef0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage():
    """Sockets and servers of these tests are finalized here, not in a later test's ast.parse
    (CPython 3.11.7 raises 'AST constructor recursion depth mismatch' when a finalizer runs there)."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def dual():
    program = harness.run_program(harness.prod_config(dsnTarget="dual", glitchtipDsn=harness.GLITCHTIP_DSN), preview=False)
    assert program.error is None, program.error
    return program


@pytest.fixture(scope="module")
def dual_provisioned():
    """dual with the DSN of the project this program provisions (no glitchtipDsn override)."""
    program = harness.run_program(harness.prod_config(dsnTarget="dual"), preview=False)
    assert program.error is None, program.error
    return program


def compose_of(program) -> dict:
    return yaml.safe_load(parse_command(program.named("glitchtip-deploy").inputs["create"])[1][-1])


def relay_compose_of(program) -> dict:
    """The relay's own compose project: install-relay.sh's last argument."""
    return yaml.safe_load(parse_command(program.named("relay-install").inputs["create"])[1][-1])


def stdin_fields(registration) -> dict[str, str]:
    return dict(line.split("=", 1) for line in registration.inputs["stdin"].splitlines())


# ---------------------------------------------------------------------------- the program


def test_the_relay_service_is_pinned_limited_and_published_on_loopback_only(dual):
    document = relay_compose_of(dual)
    assert document["name"] == "glitchtip-relay" and list(document["services"]) == ["relay"]
    service = document["services"]["relay"]
    assert service["image"].startswith("nginx:1.29@sha256:") and len(service["image"].split("@sha256:")[1]) == 64
    assert service["ports"] == ["127.0.0.1:9010:9010"]
    assert "network_mode" not in service and "profiles" not in service
    assert service["mem_limit"] == service["memswap_limit"] == f"{MEMORY_FLOOR_MB['relay']}m" == "32m"
    assert service["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert service["restart"] == "unless-stopped"
    assert service["networks"] == ["glitchtip_default"]
    assert document["networks"] == {"glitchtip_default": {"external": True, "name": "glitchtip_default"}}, "GlitchTip is reached on the stack's network"


def test_the_relay_is_not_in_the_stacks_compose_project(dual):
    """The stack's deploy (`up --remove-orphans` in project glitchtip) must never remove the relay:
    when dsnTarget leaves dual it runs before AppDsn points the app away from the relay."""
    document = compose_of(dual)
    assert "relay" not in document["services"]
    assert "relay" not in parse_command(dual.named("glitchtip-deploy").inputs["create"])[1][-1]
    assert relay_compose_of(dual)["name"] != "glitchtip"


def test_leaving_dual_keeps_the_stacks_compose_free_of_the_relay(dual):
    after = harness.run_program(harness.prod_config(dsnTarget="glitchtip", glitchtipDsn=harness.GLITCHTIP_DSN), preview=False)
    assert after.error is None
    before_doc, after_doc = compose_of(dual), compose_of(after)
    assert set(before_doc["services"]) == set(after_doc["services"])
    assert not [r for r in after.registrations if r.name.startswith("relay")], "leaving dual deletes the Relay (after AppDsn's update)"


def test_a_flip_never_touches_the_stack_or_the_host():
    """sentry -> dual -> glitchtip: every step but the relay's and the app's keeps its inputs, so
    the flip never redeploys (restarts) GlitchTip: the relay's memory share is always reserved."""
    runs = {target: harness.run_program(harness.prod_config(dsnTarget=target, glitchtipDsn=harness.GLITCHTIP_DSN), preview=False)
            for target in ("sentry", "dual", "glitchtip")}
    steps = {target: {r.name: r.inputs for r in run.registrations if r.type == "command:remote:Command"} for target, run in runs.items()}
    for target in ("dual", "glitchtip"):
        changed = {name for name in steps[target].keys() | steps["sentry"].keys()
                   if steps[target].get(name) != steps["sentry"].get(name)}
        assert changed == ({"app-dsn-set", "relay-install"} if target == "dual" else {"app-dsn-set"}), (target, changed)


def test_the_memory_plan_holds_the_relay_within_the_budget(dual):
    document, relay_document = compose_of(dual), relay_compose_of(dual)
    limits = {name: int(s["mem_limit"].rstrip("m")) for name, s in document["services"].items()}
    relay_mb = int(relay_document["services"]["relay"]["mem_limit"].rstrip("m"))
    budget = int(harness.prod_config(dsnTarget="dual")["memoryBudgetMb"])
    assert sum(limits.values()) <= document["x-memory-budget-mb"] and relay_mb <= relay_document["x-memory-budget-mb"]
    assert document["x-memory-budget-mb"] + relay_document["x-memory-budget-mb"] == budget
    assert sum(limits.values()) + relay_mb <= budget
    assert "relay" not in memory_plan("all-in-one", False, "tunnel", 1024)
    assert compose_of(dual)["x-memory-budget-mb"] == budget - 32, "the relay's share is kept out of the stack's"
    assert memory_plan("all-in-one", False, "tunnel", 1024, relay=True)["relay"] == 32


def test_the_memory_floor_counts_the_relay():
    config = harness.prod_config(dsnTarget="dual", glitchtipDsn=harness.GLITCHTIP_DSN, memoryBudgetMb=sum(MEMORY_FLOOR_MB[s] for s in ("postgres", "glitchtip")))
    program = harness.run_program(config, preview=False)
    assert isinstance(program.error, ConfigError) and "'memoryBudgetMb'" in str(program.error) and "relay" in str(program.error)


def test_relay_port_must_differ_from_glitchtip_port():
    program = harness.run_program(harness.prod_config(dsnTarget="dual", relayPort=8000, glitchtipPort=8000), preview=False)
    assert isinstance(program.error, ConfigError) and "'relayPort'" in str(program.error)


@pytest.mark.parametrize("target", ["sentry", "glitchtip"])
def test_no_relay_unless_dual(target):
    program = harness.run_program(harness.prod_config(dsnTarget=target, glitchtipDsn=harness.GLITCHTIP_DSN), preview=False)
    assert program.error is None
    assert "relay" not in compose_of(program)["services"]
    assert not [r for r in program.registrations if r.name.startswith("relay")]


@pytest.mark.parametrize("fixture", ["dual", "dual_provisioned"])
def test_no_dsn_key_in_any_command_string(fixture, request):
    program = request.getfixturevalue(fixture)
    keys = {SAAS_KEY, GT_KEY, stdin_fields(program.named("relay-install"))["CONF_B64"]}
    conf = base64.b64decode(stdin_fields(program.named("relay-install"))["CONF_B64"]).decode()
    keys |= {line.split("sentry_key=")[1][:32] for line in conf.splitlines() if "sentry_key=" in line and "[^" not in line.split("sentry_key=")[1][:4]}
    assert len(keys) >= 3
    for command in program.commands:
        for prop in ("create", "update", "delete"):
            text = command.inputs.get(prop) or ""
            for key in keys:
                assert key not in text, f"{command.name}.{prop} carries a DSN key"


def test_the_relay_config_reaches_the_server_on_stdin_only_as_a_secret(dual):
    step = dual.named("relay-install")
    assert "stdin" in step.secret_inputs
    assert {"stdout", "stderr"} <= set(step.additional_secret_outputs)
    assert step.inputs["logging"] == "none"
    script, args = parse_command(step.inputs["create"])
    assert script == "install-relay.sh" and args[:3] == ["/opt/glitchtip/relay", "glitchtip-relay", "9010"]
    assert yaml.safe_load(args[3])["services"]["relay"]["image"].startswith("nginx:1.29@sha256:")
    assert parse_command(step.inputs["delete"]) == ("uninstall-relay.sh", ["/opt/glitchtip/relay", "glitchtip-relay"])
    conf = base64.b64decode(stdin_fields(step)["CONF_B64"]).decode()
    assert f"sentry_key={GT_KEY}" in conf and "/api/1/" in conf
    assert 'set $saas_upstream "https://o4510346290069504.ingest.de.sentry.io";' in conf and "proxy_pass $saas_upstream;" in conf
    assert "resolver 127.0.0.11 valid=10s ipv6=off;" in conf, "SaaS's name must be re-resolved, not fixed at start"


def test_glitchtips_service_name_is_resolved_when_used_even_with_saas_at_an_ip():
    """The mirror's proxy_pass holds a variable: without a resolver nginx answers every copy
    'no resolver defined to resolve glitchtip' (502), and a literal name would keep nginx from
    starting while GlitchTip is down and never see a recreated container's new address."""
    spec = relay.RelaySpec(port=9010, upstream_service="glitchtip", glitchtip_port=8000)
    conf = relay.render_conf(spec, f"http://{SAAS_KEY}@10.0.0.5:9000/{SAAS_PROJECT}", f"http://{GT_KEY}@127.0.0.1:8000/7")
    assert "proxy_pass http://10.0.0.5:9000;" in conf
    assert "proxy_pass http://glitchtip:8000$mirror_uri;" in conf
    assert "resolver 127.0.0.11 valid=10s ipv6=off;" in conf


def test_the_relay_runs_after_the_stack_and_the_project_and_before_the_dsn_flip(dual):
    urns = dual.by_urn()
    step = dual.named("relay-install")
    assert {"glitchtip-deploy", "glitchtip-project"} <= {urns[d].name for d in step.dependencies}
    assert step.urn in dual.named("app-dsn-set").dependencies, "the app may point at the relay only once it runs (and destroy restores the DSN before removing it)"


def test_the_app_dsn_in_dual_is_the_relay_with_saas_key_and_project(dual):
    app = dual.named("app-dsn-set")
    assert parse_command(app.inputs["create"])[1][1] == "dual"
    fields = stdin_fields(app)
    assert fields["DSN"] == f"http://{SAAS_KEY}@127.0.0.1:9010/{SAAS_PROJECT}"
    assert fields["SENTRY_DSN"] == harness.SENTRY_DSN
    assert fields["GLITCHTIP_DSN"] == harness.GLITCHTIP_DSN


# ---------------------------------------------------------------------------- the rendered config

SPEC = relay.RelaySpec(port=9010, upstream_service="glitchtip", glitchtip_port=8000)


def test_the_config_handles_the_measured_pitfalls():
    conf = relay.render_conf(SPEC, harness.SENTRY_DSN, harness.GLITCHTIP_DSN)
    for line in (
        "keepalive_timeout 0;",
        "proxy_connect_timeout 2s;",
        "proxy_send_timeout 5s;",
        "proxy_read_timeout 5s;",
        "client_max_body_size 20m;",
        "proxy_ssl_server_name on;",
        "proxy_ssl_verify on;",
        f"proxy_ssl_trusted_certificate {relay.CA_BUNDLE};",
        "worker_connections 8192;",
        "log_subrequest on;",
    ):
        assert line in conf, line
    assert "worker_rlimit_nofile" in conf
    assert "$upstream_status" in conf and "$request_uri" not in conf.split("log_format")[1].split(";")[0]
    assert "error_log stderr crit;" in conf


def test_the_config_never_logs_the_uri_with_the_key():
    conf = relay.render_conf(SPEC, harness.SENTRY_DSN, harness.GLITCHTIP_DSN)
    formats = [line for line in conf.splitlines() if "log_format" in line]
    assert len(formats) == 2 and not any("request_uri" in f or "$args" in f or "$request " in f or "http_" in f for f in formats)


def test_relay_dsn():
    assert relay.relay_dsn(harness.SENTRY_DSN, 9011) == f"http://{SAAS_KEY}@127.0.0.1:9011/{SAAS_PROJECT}"


# ---------------------------------------------------------------------------- nginx itself, when installed


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: list = []
    delay = 0.0

    def do_POST(self):  # noqa: N802
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(self.rfile.readline(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.delay)
        self.received.append({"path": self.path, "auth": self.headers.get("X-Sentry-Auth"), "encoding": self.headers.get("Content-Encoding"), "sha": hashlib.sha256(body).hexdigest()})
        answer = json.dumps({"id": "x"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(delay: float = 0.0):
    handler = type("Recorder", (_Recorder,), {"received": [], "delay": delay})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler.received


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def start_nginx(tmp_path: Path, port: int, saas_dsn: str, glitchtip_dsn: str) -> Path:
    """nginx with the relay's config, GlitchTip's compose address swapped for the DSN's loopback one."""
    gt = relay.Dsn.parse(glitchtip_dsn).host
    spec = relay.RelaySpec(port=port, upstream_service="127.0.0.1", glitchtip_port=int(gt.rsplit(":", 1)[1]))
    conf = relay.render_conf(spec, saas_dsn, glitchtip_dsn)
    conf = (conf.replace("/tmp/nginx-relay.pid", str(tmp_path / "nginx.pid"))
            .replace("/dev/stdout", str(tmp_path / "access.log"))
            .replace(f"127.0.0.1:{relay.GLITCHTIP_CONTAINER_PORT}$", f"{gt}$"))
    (tmp_path / "nginx.conf").write_text(conf)
    subprocess.run([NGINX, "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log"), "-p", str(tmp_path)], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return tmp_path / "nginx.pid"


@pytest.fixture
def nginx_relay(tmp_path):
    if not NGINX:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("nginx is not installed: run `make setup` (apt-get install nginx-light)")
    saas, saas_got = _server()
    gt, gt_got = _server()
    port = _free_port()
    saas_dsn = f"http://{SAAS_KEY}@127.0.0.1:{saas.server_address[1]}/{SAAS_PROJECT}"
    pid = start_nginx(tmp_path, port, saas_dsn, f"http://{GT_KEY}@127.0.0.1:{gt.server_address[1]}/7")
    state = type("Relay", (), {})()
    state.port, state.saas_got, state.gt_got, state.gt, state.log = port, saas_got, gt_got, gt, tmp_path / "access.log"
    yield state
    subprocess.run(["kill", pid.read_text().strip()], check=False)
    for server in (saas, gt):
        server.shutdown()
        server.server_close()


def _post(port, path, body, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        with conn.getresponse() as response:
            return response.status, response.read()
    finally:
        conn.close()


def _wait(predicate, seconds=8):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_nginx_forwards_unchanged_and_mirrors_byte_identical_copies(nginx_relay):
    import gzip

    small = b'{"event_id":"1"}\n{"type":"event"}\n{"message":"hello"}\n'
    big = gzip.compress(os.urandom(5 * 1024 * 1024))
    query = f"/api/{SAAS_PROJECT}/envelope/?sentry_version=7&sentry_key={SAAS_KEY}&sentry_client=sentry.javascript.node%2F10.0.0"
    assert _post(nginx_relay.port, query, small)[0] == 200
    auth = f"Sentry sentry_version=7, sentry_key={SAAS_KEY}, sentry_client=sentry.python/2"
    assert _post(nginx_relay.port, f"/api/{SAAS_PROJECT}/envelope/", big, {"X-Sentry-Auth": auth, "Content-Encoding": "gzip"})[0] == 200
    assert _wait(lambda: len(nginx_relay.gt_got) == 2)
    saas, gt = nginx_relay.saas_got, sorted(nginx_relay.gt_got, key=lambda r: r["auth"] is not None)
    assert [r["path"] for r in saas] == [query, f"/api/{SAAS_PROJECT}/envelope/"]
    assert saas[1]["auth"] == auth
    assert gt[0]["path"] == f"/api/7/envelope/?sentry_version=7&sentry_key={GT_KEY}&sentry_client=sentry.javascript.node%2F10.0.0"
    assert gt[0]["auth"] is None, "the key must not be added to the header when it was in the query"
    assert gt[1]["path"] == "/api/7/envelope/" and gt[1]["auth"] == auth.replace(SAAS_KEY, GT_KEY) and gt[1]["encoding"] == "gzip"
    assert [r["sha"] for r in gt] == [r["sha"] for r in saas] == [hashlib.sha256(b).hexdigest() for b in (small, big)]
    assert _wait(lambda: nginx_relay.log.read_text().count("\n") == 4)
    lines = nginx_relay.log.read_text().splitlines()
    assert sorted(line.split()[1] for line in lines) == ["main", "main", "mirror", "mirror"]
    assert all(line.split()[5:7] == ["200", "200"] for line in lines)
    assert SAAS_KEY not in nginx_relay.log.read_text() and GT_KEY not in nginx_relay.log.read_text()


def test_a_stopped_glitchtip_never_slows_or_fails_the_app(nginx_relay):
    nginx_relay.gt.shutdown()
    nginx_relay.gt.server_close()
    started = time.monotonic()
    statuses = [_post(nginx_relay.port, f"/api/{SAAS_PROJECT}/envelope/?sentry_key={SAAS_KEY}", b"x" * 100)[0] for _ in range(20)]
    assert statuses == [200] * 20 and time.monotonic() - started < 5
    assert len(nginx_relay.saas_got) == 20
    assert _wait(lambda: nginx_relay.log.read_text().count(" mirror ") == 20)
    assert {line.split()[5] for line in nginx_relay.log.read_text().splitlines() if " mirror " in line} == {"502"}


# ---------------------------------------------------------------------------- scripts/parallel_report.py


def test_the_report_counts_what_nginx_logged(nginx_relay, tmp_path, capsys):
    from scripts import parallel_report

    for _ in range(3):
        _post(nginx_relay.port, f"/api/{SAAS_PROJECT}/envelope/?sentry_key={SAAS_KEY}", b"x")
    _post(nginx_relay.port, "/api/999/envelope/?sentry_key=other", b"x")  # not SaaS's project: not copied
    assert _wait(lambda: nginx_relay.log.read_text().count("\n") == 8)
    argv = ["--no-pulumi", "--no-api", "--log-file", str(nginx_relay.log), "--min-ratio", "0.99"]
    assert parallel_report.main(argv) == 0
    out = capsys.readouterr().out
    total = [line for line in out.splitlines() if line.startswith("total")][0].split()
    assert total == ["total", "4", "200:4", "200:3", "204:1", "0", "100.0%"]

    nginx_relay.gt.shutdown()
    nginx_relay.gt.server_close()
    _post(nginx_relay.port, f"/api/{SAAS_PROJECT}/envelope/?sentry_key={SAAS_KEY}", b"x")
    assert _wait(lambda: nginx_relay.log.read_text().count("\n") == 10)
    assert parallel_report.main(argv) == 1
    captured = capsys.readouterr()
    assert "below 99.0%" in captured.err
    assert [line for line in captured.out.splitlines() if line.startswith("total")][0].split()[-1] == "75.0%"


def test_the_report_counts_visible_events_by_hour():
    from datetime import datetime, timedelta, timezone

    from scripts import parallel_report

    now = datetime.now(timezone.utc).replace(minute=30)
    log = "\n".join([
        f"2026-12-04T10:00:00.000Z stdout relay main {now.isoformat()} POST /api/1/envelope/ 200 200 10 0.001",
        f"relay mirror {now.isoformat()} POST /api/1/envelope/ 403 403 0 0.001",
        f"relay main {(now - timedelta(hours=100)).isoformat()} POST /api/1/envelope/ 200 200 10 0.001",
        "some nginx startup line",
    ])

    class Client:
        def list_all(self, path):
            assert path == "/api/0/projects/org/proj/events/"
            return [{"dateReceived": now.isoformat().replace("+00:00", "Z")}, {"dateCreated": (now - timedelta(hours=100)).isoformat()}]

    hours: dict = {}
    since = now - timedelta(hours=48)
    parallel_report.parse_log(log, hours, since)
    parallel_report.count_visible(Client(), "org", "proj", hours, since)
    assert list(hours) == [now.replace(minute=0, second=0, microsecond=0)]
    hour = hours[now.replace(minute=0, second=0, microsecond=0)]
    assert (hour.received, dict(hour.saas), dict(hour.mirror), hour.visible, hour.ratio) == (1, {"200": 1}, {"403": 1}, 1, 0.0)


# ---------------------------------------------------------------------------- set-dsn.sh's gate for dual

from tests.unit.test_set_dsn_script import SENTRY_DSN as APP_SENTRY_DSN, failed, glitchtip, ok, server  # noqa: E402,F401 (fixtures)


@pytest.fixture
def saas_standin(tmp_path):
    from tests.standins.sentry_saas import Recorder, make_handler

    (tmp_path / "saas").mkdir()
    saas = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Recorder(tmp_path / "saas", SAAS_KEY)))
    saas.daemon_threads = True
    threading.Thread(target=saas.serve_forever, daemon=True).start()
    yield f"http://{SAAS_KEY}@127.0.0.1:{saas.server_address[1]}/{SAAS_PROJECT}", tmp_path / "saas"
    saas.shutdown()
    saas.server_close()


def test_the_dual_gate_proves_both_paths_then_points_the_app_at_the_relay(server, glitchtip, saas_standin, tmp_path):
    if not NGINX:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("nginx is not installed: run `make setup` (apt-get install nginx-light)")
    from components.app_dsn import render_stdin

    saas_dsn, saas_dir = saas_standin
    port = _free_port()
    (tmp_path / "nginx").mkdir()
    pid = start_nginx(tmp_path / "nginx", port, saas_dsn, glitchtip.dsn)
    try:
        dsn = relay.relay_dsn(saas_dsn, port)
        args = (str(server.env_file), "dual", glitchtip.url, "", "")
        bad_key = "http://" + "e" * 32 + "@" + glitchtip.dsn.split("@", 1)[1]
        failed(server.run("set-dsn.sh", args, render_stdin(dsn, APP_SENTRY_DSN, glitchtip.token, bad_key)), "relay key check")
        assert not list(saas_dir.glob("*.json")), "a wrong GlitchTip key must stop the gate before anything goes through the relay"
        time.sleep(0.3)  # the stand-in blocks the project 0.2 s after a wrong key
        out = ok(server.run("set-dsn.sh", args, render_stdin(dsn, APP_SENTRY_DSN, glitchtip.token, glitchtip.dsn))).stdout
        assert "target=dual changed=yes" in out and "visible=yes" in out
        assert server.proc("ai-admin-api")["env"]["SENTRY_DSN"] == dsn
        saas_got = [json.loads(p.read_text()) for p in sorted(saas_dir.glob("*.json"))]
        assert [(r["path"], r["status"]) for r in saas_got] == [(f"/api/{SAAS_PROJECT}/envelope/", 200)]
        assert "relay check" in (saas_dir / saas_got[0]["body_file"]).read_text()
        failed(server.run("set-dsn.sh", args, render_stdin(dsn, APP_SENTRY_DSN)), "GLITCHTIP_DSN and API_TOKEN")
    finally:
        subprocess.run(["kill", pid.read_text().strip()], check=False)


# ---------------------------------------------------------------------------- install-relay.sh / uninstall-relay.sh

FAKE_DOCKER = r"""#!/usr/bin/env bash
# A fake docker: one relay container whose id and image live in $FAKE_DIR.
echo "$*" >> "$FAKE_DIR/argv.log"
if [ "$1" = compose ]; then
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --project-name|--project-directory|--file|--env-file|--profile) shift 2 ;;
      ps) [ ! -f "$FAKE_DIR/id" ] || cat "$FAKE_DIR/id"; exit 0 ;;
      up) n=$(( $(cat "$FAKE_DIR/n" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$FAKE_DIR/n"
          echo "cid$n" > "$FAKE_DIR/id"; exit 0 ;;
      *) shift ;;
    esac
  done
  exit 0
fi
case "$1 $2" in
  "inspect --format") case "$3" in *Running*) echo true ;; *Image*) cat "$FAKE_DIR/image" ;; esac ;;
  "ps -aq") case "$*" in *project=glitchtip-relay*) [ ! -f "$FAKE_DIR/id" ] || cat "$FAKE_DIR/id" ;; esac ;;
  "rm -f") rm -f "$FAKE_DIR/id" ;;
esac
"""


@pytest.fixture
def relay_host(tmp_path):
    bin_dir, fake, install = tmp_path / "bin", tmp_path / "fake", tmp_path / "opt"
    for d in (bin_dir, fake, install):
        d.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    compose = relay.render_compose(relay.RelaySpec(port=9010, upstream_service="glitchtip", glitchtip_port=8000), "nginx:1.29@sha256:" + "a" * 64, 32)
    install = install / "relay"

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    health = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DIR": str(fake), "WAIT_SECONDS": "5", "LANG": "C.UTF-8"}

    def run(script: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        from components.remote import Step

        return subprocess.run(["bash", "-c", Step(script, args).render()], input=stdin, env=env, capture_output=True, text=True, timeout=60)

    yield type("Host", (), {"run": staticmethod(run), "dir": install, "fake": fake, "compose": compose, "port": str(health.server_address[1])})
    health.shutdown()
    health.server_close()


def test_install_relay_writes_its_project_config_0600_and_is_idempotent(relay_host):
    h = relay_host
    args = (str(h.dir), "glitchtip-relay", h.port, h.compose)
    stdin = relay.render_stdin("http {\n}\n# key abc\n")
    first = h.run("install-relay.sh", *args, stdin=stdin)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "conf=yes compose=yes container=cid1\n"
    conf, compose = h.dir / relay.CONF, h.dir / "compose.yaml"
    assert conf.read_text() == "http {\n}\n# key abc\n" and (conf.stat().st_mode & 0o777) == 0o600
    assert yaml.safe_load(compose.read_text()) == yaml.safe_load(h.compose) and (compose.stat().st_mode & 0o777) == 0o644
    before = (conf.stat().st_mtime_ns, compose.stat().st_mtime_ns, (h.fake / "id").read_text())
    second = h.run("install-relay.sh", *args, stdin=stdin)
    assert second.returncode == 0 and second.stdout == "conf=no compose=no container=cid1\n" and "skipped" in second.stderr
    assert (conf.stat().st_mtime_ns, compose.stat().st_mtime_ns, (h.fake / "id").read_text()) == before
    third = h.run("install-relay.sh", *args, stdin=relay.render_stdin("http {\n}\n# key def\n"))
    assert third.returncode == 0 and third.stdout == "conf=yes compose=no container=cid2\n"
    newer = h.compose.replace("a" * 64, "b" * 64)
    fourth = h.run("install-relay.sh", str(h.dir), "glitchtip-relay", h.port, newer, stdin=relay.render_stdin("http {\n}\n# key def\n"))
    assert fourth.returncode == 0 and fourth.stdout == "conf=no compose=yes container=cid3\n", "a new image re-runs compose up"
    ups = [line for line in (h.fake / "argv.log").read_text().splitlines() if " up " in line]
    assert len(ups) == 3 and "--force-recreate" not in ups[0] and "--force-recreate" in ups[1], "a new config needs a new container"
    assert all("--project-name glitchtip-relay" in line for line in ups), "never the stack's project"
    assert "abc" not in (h.fake / "argv.log").read_text() + first.stderr + third.stderr


def test_install_relay_refuses_without_stdin_or_its_compose_service(relay_host):
    h = relay_host
    none = h.run("install-relay.sh", str(h.dir), "glitchtip-relay", h.port, h.compose)
    assert none.returncode != 0 and "CONF_B64" in none.stderr
    other = h.run("install-relay.sh", str(h.dir), "glitchtip-relay", h.port, "services:\n  web: {}\n", stdin=relay.render_stdin("http {\n}\n"))
    assert other.returncode != 0 and "no relay service" in other.stderr and not (h.dir / relay.CONF).exists()


def test_uninstall_relay_removes_its_project_and_is_idempotent(relay_host):
    h = relay_host
    assert h.run("install-relay.sh", str(h.dir), "glitchtip-relay", h.port, h.compose, stdin=relay.render_stdin("http {\n}\n")).returncode == 0
    gone = h.run("uninstall-relay.sh", str(h.dir), "glitchtip-relay")
    assert gone.returncode == 0 and "container is removed" in gone.stderr
    assert not h.dir.exists() and not (h.fake / "id").exists()
    assert "ps -aq --filter label=com.docker.compose.project=glitchtip-relay" in (h.fake / "argv.log").read_text()
    again = h.run("uninstall-relay.sh", str(h.dir), "glitchtip-relay")
    assert again.returncode == 0 and "nothing to remove" in again.stderr
