"""The parallel run (dsnTarget=dual) on the throwaway server, applied by the engine stand-in.

The program runs under mocks aimed at the test server, limited to the stack, the relay and
AppDsn. The relay is the real rendered nginx.conf and compose file, run by dockerd in the
server from the nginx stand-in image (Debian's nginx). "Sentry SaaS" is the Sentry stand-in,
reached by the app and the relay at the server's own address (from the relay's container,
127.0.0.1 would be the container itself); GlitchTip is the stack's stand-in image, which the
relay reaches by its compose service name and which records the digest of every body it takes.
The app is the testhost's PM2 app (real PM2, dotenv and @sentry/node 10), its .env pointed at
the Sentry stand-in's address for the module and put back afterwards.

What this does not prove: TLS to SaaS (the stand-in is plain HTTP; SNI and certificate
checks are in the rendered config and unit-tested for their presence only), nginx 1.29
itself (the image is Debian's 1.22), real GlitchTip's ingest, compose v2.

The tests share one server, one engine state and one GlitchTip project, and run in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from components import relay
from components.glitchtip.client import GlitchTipClient
from scripts import parallel_report
from tests.harness import Program
from tests.integration.apphost import (
    APPS,
    CLEAN_STACK,
    ENV_FILE,
    FRESH_APP,
    STACK_DIR,
    Ends,
    boom,
    file_facts,
    glitchtip_project,
    new_marker,
    program_for,
    restart_glitchtip,
    steps_of,
    wait_until,
)
from tests.integration.engine import Engine, StepFailed, run_over_ssh

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORT = 9010  # relayPort's default
RELAY_DIR = f"{STACK_DIR}/{relay.SUBDIR}"
RELAY_CONTAINERS = f"docker ps -aq --filter label=com.docker.compose.project={relay.PROJECT}"
MIRROR_READ_TIMEOUT = float(relay.MIRROR_TIMEOUTS["read"].rstrip("s"))
FAULTS: dict[str, int] = {}
"""Envelopes SaaS received while GlitchTip hung / was stopped (set by those tests, read by the report's)."""
STALL_LIMIT_S = 1.0
"""A request slower than this waited for GlitchTip: one held back by a pending copy waits at least the
mirror's 2 s connect timeout (measured here with keepalive_timeout 75: 2.0 s; as rendered: 1-30 ms)."""


# ---------------------------------------------------------------------------- helpers


def saas_dsn(testhost) -> str:
    return testhost.sentry.dsn_at(testhost.address)


def program(testhost, target: str, glitchtip: dict | None = None) -> Program:
    return program_for(testhost, target, glitchtip["dsn"] if glitchtip else None, glitchtip["token"] if glitchtip else "",
                       sentry_dsn=saas_dsn(testhost), names=("glitchtip", "relay", "app-dsn"),
                       relayImage=testhost.images["nginx"])


def env_dsn(testhost) -> str:
    return re.search(rb"^SENTRY_DSN=(.*)$", testhost.read_file(ENV_FILE), re.M).group(1).decode()


def relay_container(testhost) -> str:
    return testhost.run(RELAY_CONTAINERS).stdout.strip()


def relay_log(testhost) -> list[str]:
    """The relay's access-log lines (`relay main|mirror TIME METHOD PATH STATUS UPSTREAM ...`)."""
    out = testhost.run(parallel_report.LOGS_COMMAND).stdout
    return [line for line in out.splitlines() if line.startswith(f"{relay.LOG_PREFIX} ")]


def fresh_second() -> float:
    """Now, at the start of a new second: the relay's log has whole seconds, so nothing logged
    before this moment shares its second."""
    time.sleep(1.05 - time.time() % 1)
    return time.time()


def mirror_statuses(testhost, since: float) -> Counter:
    """Statuses of the copies the relay logged from SINCE on (its log has whole seconds)."""
    start = datetime.fromtimestamp(int(since), timezone.utc)
    lines = [x.split() for x in relay_log(testhost) if x.split()[1] == "mirror"]
    return Counter(f[5] for f in lines if datetime.fromisoformat(f[2]) >= start)


def no_relay_left(testhost) -> None:
    assert relay_container(testhost) == "", "a relay container is left"
    assert testhost.ssh(f"test -e {RELAY_DIR}").rc != 0, f"{RELAY_DIR} is left (its nginx.conf holds the keys)"
    assert f"127.0.0.1:{PORT} " not in testhost.run("ss -Hltn").stdout, f"something still listens on {PORT}"


def ingested(api: GlitchTipClient) -> list[dict]:
    """What the GlitchTip stand-in took on its ingest endpoints: path, status, body sha256."""
    return api.request("GET", "/_standin/ingested").body["ingested"]


def sentry_since(testhost, since: float) -> list[dict]:
    return [e for e in testhost.sentry.received() if e["time"] >= since]


def timed_booms(testhost, markers: list[str]) -> list[float]:
    """Seconds each app request took (/boom captures the error and flushes it before answering 500)."""
    times = []
    for marker in markers:
        body, took = testhost.run(f"curl -sS -w '\\n%{{time_total}}' --max-time 30 "
                                  f"'http://127.0.0.1:{APPS['ai-admin-api']}/boom?marker={marker}'", timeout=60).stdout.rsplit("\n", 1)
        answer = json.loads(body)
        assert answer["marker"] == marker and answer["flushed"] is True, answer  # the SDK's send completed
        times.append(float(took))
    return times


def post_to_relay(testhost, envelope: bytes, times: int = 1) -> list[tuple[str, float]]:
    """POST ENVELOPE to the relay as the SDK would (SaaS's key in the query), TIMES over ONE
    keep-alive connection; [(HTTP status, seconds)] per request. The URL (it holds the key)
    reaches curl on stdin, not in its arguments."""
    saas = relay.Dsn.parse(saas_dsn(testhost))
    url = f"http://127.0.0.1:{PORT}/api/{saas.project_id}/envelope/?sentry_version=7&sentry_key={saas.key}"
    testhost.put_file("/tmp/relay-test.envelope", envelope, 0o600)
    config = "".join(f'url = "{url}"\noutput = "/dev/null"\n' for _ in range(times))
    out = testhost.run("curl -sS --max-time 30 -K - -H 'Content-Type: application/x-sentry-envelope'"
                       " --data-binary @/tmp/relay-test.envelope -w '%{http_code} %{time_total}\\n'",
                       stdin=config, timeout=60).stdout.split()
    return [(status, float(took)) for status, took in zip(out[0::2], out[1::2])]


def keepalive_pair(testhost) -> list[float]:
    """Seconds each of two envelopes took over one keep-alive connection, as an SDK with a
    keep-alive agent sends them (a pending copy must not hold the second one back)."""
    answers = post_to_relay(testhost, b'{}\n{"type":"event"}\n{"message":"relay keep-alive probe","level":"info"}\n', times=2)
    assert [status for status, _ in answers] == ["200", "200"], answers
    return [took for _, took in answers]


def report(ops: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "parallel_report.py"), *ops["args"], *args],
                          env=ops["env"], capture_output=True, text=True, timeout=300, cwd=ROOT)


def total_row(stdout: str) -> list[str]:
    """The report's total row: [received, to SaaS, to GlitchTip, visible, delivered] (cells split on 2+ blanks)."""
    line = next(x for x in stdout.splitlines() if x.startswith("total"))
    return re.split(r"\s{2,}", line.strip())[1:]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def host(testhost) -> Iterator:
    """The shared server, the app's .env pointed at the Sentry stand-in's address; no stack or relay
    of ours before or after, and the .env and PM2 as they were."""
    testhost.ssh(CLEAN_STACK, timeout=120)
    original, mode = testhost.read_file(ENV_FILE), testhost.stat(ENV_FILE).st_mode & 0o777
    testhost.put_file(ENV_FILE, original.replace(testhost.sentry.dsn.encode(), saas_dsn(testhost).encode()), mode)
    testhost.run(FRESH_APP)
    yield testhost
    testhost.ssh(CLEAN_STACK, timeout=120)
    testhost.ssh(f"rm -f {ENV_FILE}.glitchtip-migration.orig {ENV_FILE}.glitchtip-migration.restart-pending")
    testhost.put_file(ENV_FILE, original, mode)
    testhost.run(FRESH_APP)


@pytest.fixture(scope="module")
def engine(host) -> Engine:
    engine = Engine()
    steps = engine.up(program(host, "sentry"))
    assert steps_of(steps) == [("glitchtip-deploy", "create"), ("app-dsn-set", "create")]
    return engine


@pytest.fixture(scope="module")
def glitchtip(host, engine) -> Iterator[dict]:
    with glitchtip_project(host, "relay-test") as project:
        yield project


@pytest.fixture(scope="module")
def ends(host, glitchtip) -> Ends:
    return Ends(host, glitchtip["api"])


@pytest.fixture(scope="module")
def dual(host, engine, glitchtip) -> dict:
    """`pulumi up` with dsnTarget dual: the relay starts, proves both paths, then the app points at it."""
    started = time.time()
    steps = engine.up(program(host, "dual", glitchtip))
    assert steps_of(steps) == [("relay-install", "create"), ("app-dsn-set", "update")]
    return {"since": started, "steps": steps}


@pytest.fixture(scope="module")
def ops(host, glitchtip) -> dict:
    """How an operator runs scripts/parallel_report.py against this server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLITCHTIP_")}
    env.update(GLITCHTIP_TOKEN=glitchtip["token"], GLITCHTIP_NO_PULUMI="1")
    args = ["--ssh-host", host.address, "--ssh-host-key", host.host_key, "--ssh-key-file", str(host.private_key_path),
            "--api-url", "http://127.0.0.1:8000", "--remote-port", "8000", "--org", "acme", "--project", "ai-admin", "--hours", "2"]
    return {"env": env, "args": args}


# ---------------------------------------------------------------------------- tests


def test_the_flip_to_dual_starts_the_relay_proves_both_paths_then_points_the_app_at_it(host, dual, glitchtip):
    install, flip = dual["steps"]
    assert re.fullmatch(r"conf=yes compose=yes container=[0-9a-f]{12,}\s*", install.stdout), install.stdout
    assert "gate=passed" in flip.stdout and "visible=yes" in flip.stdout, flip.stdout + flip.stderr
    assert "GlitchTip accepts the relay's key" in flip.stderr  # the mirror's key was proven directly, first
    assert env_dsn(host) == relay.relay_dsn(saas_dsn(host), PORT)
    gate_event = flip.stdout.split("event=")[1].split()[0]
    assert any(gate_event.encode() in e["body"] for e in sentry_since(host, dual["since"])), "the gate's envelope did not reach SaaS"
    assert glitchtip["api"].request("GET", f"/api/0/projects/acme/ai-admin/events/{gate_event}/").status == 200


def test_the_relay_is_pinned_bounded_on_loopback_and_holds_its_keys_0600(host, dual, glitchtip):
    container = json.loads(host.run(f"docker inspect {relay_container(host)}").stdout)[0]
    compose = yaml.safe_load(host.read_file(f"{RELAY_DIR}/compose.yaml"))["services"][relay.SERVICE]
    assert compose["image"] == host.images["nginx"] and "@sha256:" in compose["image"]
    assert container["Config"]["Image"] == host.images["nginx"]
    limit = int(compose["mem_limit"].rstrip("m"))
    assert container["HostConfig"]["Memory"] == limit * 2**20 and limit == 32
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["HostConfig"]["PortBindings"] == {f"{PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]}
    listening = [line.split()[3] for line in host.run("ss -Hltn").stdout.splitlines() if line.split()[3].endswith(f":{PORT}")]
    assert listening == [f"127.0.0.1:{PORT}"], listening
    assert host.run(f"stat -c '%a %U' {RELAY_DIR}/{relay.CONF}").stdout.split() == ["600", "root"]
    keys = [relay.Dsn.parse(saas_dsn(host)).key, relay.Dsn.parse(glitchtip["dsn"]).key]
    assert keys[1] in host.read_file(f"{RELAY_DIR}/{relay.CONF}").decode(), "the copies' key lives in the 0600 config"
    visible = host.run(f"docker inspect {relay_container(host)}; ps -eo args; cat {RELAY_DIR}/compose.yaml").stdout
    assert not any(k in visible for k in keys), "a DSN key shows in docker inspect, the process list or the compose file"


def test_the_apps_errors_reach_both_with_identical_bodies(host, dual, glitchtip, ends):
    since = time.time()
    markers = {port: new_marker(f"both{port}") for port in APPS.values()}
    for port, marker in markers.items():
        boom(host, marker, port)
    saas = {}
    for marker in markers.values():
        assert wait_until(lambda m=marker: any(m.encode() in e["body"] for e in sentry_since(host, since)), 20), marker
        saas[marker] = next(e for e in sentry_since(host, since) if marker.encode() in e["body"])
    for marker, entry in saas.items():
        saas_id = relay.Dsn.parse(saas_dsn(host)).project_id
        assert entry["path"] == f"/api/{saas_id}/envelope/" and entry["status"] == 200
        assert entry["query"]["sentry_key"] == [host.sentry.key]
        assert hashlib.sha256(entry["body"]).hexdigest() == entry["body_sha256"]
        gt_id = relay.Dsn.parse(glitchtip["dsn"]).project_id
        copy = lambda: [c for c in ingested(glitchtip["api"]) if c["sha256"] == entry["body_sha256"]]  # noqa: E731
        assert wait_until(lambda: bool(copy()), 20), f"no byte-identical copy of {marker}'s envelope reached GlitchTip"
        assert [(c["path"], c["status"], c["bytes"]) for c in copy()] == [(f"/api/{gt_id}/envelope/", 200, entry["body_bytes"])]
        assert wait_until(lambda m=marker: ends.at_glitchtip(m), 20), f"{marker} is not an issue in GlitchTip"


def test_a_large_envelope_reaches_both_unchanged(host, dual, glitchtip):
    """nginx's default body limit is 1 MiB (413): the relay takes what the SDK may send."""
    marker = new_marker("large")
    event = {"message": f"relay large envelope {marker}", "level": "info", "extra": {"blob": os.urandom(3 * 2**20).hex()}}
    envelope = b"{}\n" + b'{"type":"event"}\n' + json.dumps(event).encode() + b"\n"
    digest = hashlib.sha256(envelope).hexdigest()
    assert [status for status, _ in post_to_relay(host, envelope)] == ["200"]
    assert any(e["body_sha256"] == digest for e in host.sentry.received()), "SaaS did not get the 6 MiB envelope unchanged"
    assert wait_until(lambda: any(c["sha256"] == digest and c["status"] == 200 for c in ingested(glitchtip["api"])), 20), \
        "GlitchTip did not get the 6 MiB envelope unchanged"


def test_the_report_counts_what_the_standins_stored(host, dual, glitchtip, ops):
    healthy = report(ops, "--min-ratio", "1")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    received, to_saas, to_glitchtip, visible, delivered = total_row(healthy.stdout)
    envelopes = sentry_since(host, dual["since"])  # since the relay started, every envelope to SaaS went through it
    copies = [c for c in ingested(glitchtip["api"]) if c["time"] >= dual["since"] - 1]
    relayed = {e["body_sha256"] for e in envelopes}
    assert int(received) == len(envelopes) > 0
    assert to_saas == f"200:{len(envelopes)}"
    assert to_glitchtip == f"200:{sum(c['sha256'] in relayed for c in copies)}" == f"200:{len(envelopes)}"
    events = glitchtip["api"].request("GET", "/_standin/state").body["counts"]["issue_events_issueevent"]
    assert int(visible) == events, "visible events differ from what GlitchTip stored"
    assert delivered == "100.0%"
    assert host.sentry.key not in healthy.stdout + healthy.stderr and glitchtip["token"] not in healthy.stdout + healthy.stderr


def test_the_relay_comes_back_by_itself_when_nginx_dies(host, dual, ends):
    before = json.loads(host.run(f"docker inspect {relay_container(host)}").stdout)[0]["State"]
    host.run(f"kill -9 {before['Pid']}")  # nginx's master, the container's first process
    assert wait_until(lambda: host.ssh(f"curl -fsS http://127.0.0.1:{PORT}/_relay/health").stdout == "ok", 30), \
        "the relay did not come back after its nginx died"
    after = json.loads(host.run(f"docker inspect {relay_container(host)}").stdout)[0]
    assert after["RestartCount"] >= 1 and after["State"]["Pid"] != before["Pid"]
    ends.lands("both")


def test_a_hung_glitchtip_never_slows_the_app_and_saas_gets_everything(host, dual, glitchtip):
    gt = host.run(f"cd {STACK_DIR} && docker compose ps -q glitchtip </dev/null").stdout.strip()
    since, markers = fresh_second(), [new_marker("hung") for _ in range(6)]
    host.run(f"docker pause {gt}")
    try:
        times = timed_booms(host, markers) + keepalive_pair(host)
        time.sleep(MIRROR_READ_TIMEOUT + 2)  # hung for longer than the relay waits for a copy's answer
    finally:
        host.run(f"docker unpause {gt}")
    print(f"\napp requests with GlitchTip hung: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")
    assert max(times) < STALL_LIMIT_S, f"the app waited for the hung GlitchTip: {times}"
    bodies = [e["body"] for e in sentry_since(host, since)]
    assert all(any(m.encode() in b for b in bodies) for m in markers), "SaaS did not receive every envelope"
    # Each copy of what SaaS got meanwhile was given up after the mirror's read timeout, and logged as such.
    sent = len(sentry_since(host, since))
    assert wait_until(lambda: mirror_statuses(host, since) == Counter({"504": sent}), MIRROR_READ_TIMEOUT * 3), \
        (sent, mirror_statuses(host, since))
    FAULTS["hung"] = sent


def test_a_stopped_glitchtip_never_fails_the_app_and_the_copies_resume(host, dual, glitchtip, ends):
    since, markers = fresh_second(), [new_marker("down") for _ in range(6)]
    host.run(f"cd {STACK_DIR} && docker compose stop glitchtip </dev/null", timeout=120)
    try:
        times = timed_booms(host, markers)
        # Stopped until every copy is settled: a copy still connecting when GlitchTip is back gets through.
        sent = len(sentry_since(host, since))
        assert wait_until(lambda: sum(mirror_statuses(host, since).values()) >= sent, MIRROR_READ_TIMEOUT * 3)
    finally:
        restart_glitchtip(host)
    print(f"\napp requests with GlitchTip stopped: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")
    assert max(times) < STALL_LIMIT_S, f"the app waited for the stopped GlitchTip: {times}"
    bodies = [e["body"] for e in sentry_since(host, since)]
    assert all(any(m.encode() in b for b in bodies) for m in markers), "SaaS did not receive every envelope"
    # Each copy failed (502: the name no longer resolves; 504: its last address no longer answers).
    failed = mirror_statuses(host, since)
    assert set(failed) <= {"502", "504"} and sum(failed.values()) == sent, (sent, failed)
    FAULTS["stopped"] = sent

    def copied_again() -> bool:
        marker = new_marker("back")
        boom(host, marker)
        return wait_until(lambda: ends.at_glitchtip(marker), 3)

    # GlitchTip's container is back (perhaps at another address): the relay finds it by name again.
    assert wait_until(copied_again, 30), "the copies did not resume after GlitchTip came back"


def test_the_report_flags_the_lost_copies(host, dual, ops):
    lossy = report(ops, "--min-ratio", "0.99")
    assert lossy.returncode == 1, lossy.stdout + lossy.stderr
    assert "delivery to GlitchTip below 99.0%" in lossy.stderr
    received, to_saas, to_glitchtip, _, delivered = total_row(lossy.stdout)
    reported = Counter({status: int(n) for status, n in (cell.split(":") for cell in to_glitchtip.split())})
    assert int(received) == len(sentry_since(host, dual["since"])) and to_saas == f"200:{received}"
    assert reported == mirror_statuses(host, dual["since"]), "the report's statuses differ from the relay's log"
    lost = sum(n for status, n in reported.items() if status != "200")
    # Every copy made while GlitchTip hung or was stopped is counted lost (and any tried before the relay saw it back).
    assert lost >= FAULTS["hung"] + FAULTS["stopped"] > 0, (reported, FAULTS)
    assert delivered == f"{reported['200'] / (reported['200'] + lost):.1%}"


def test_the_stack_will_not_go_while_the_relay_uses_its_network(host, engine, dual):
    """Pulumi removes the relay before the stack; should the relay outlive its state, the stack's
    teardown says so before it stops anything."""
    deploy = next(r for r in engine.state.values() if r.name == "glitchtip-deploy")
    result = run_over_ssh(deploy.inputs["connection"], deploy.inputs["delete"], None, deploy.urn, "delete")
    assert result.exit_code != 0
    assert "still use the network glitchtip_default (the dual relay?)" in result.stderr and "nothing was stopped" in result.stderr, result.stderr
    assert host.run("curl -fsS http://127.0.0.1:8000/_health/").stdout.strip() == "ok"
    assert host.run(f"curl -fsS http://127.0.0.1:{PORT}/_relay/health").stdout == "ok"


def test_dual_to_glitchtip_is_one_flip_and_leaves_no_relay(host, engine, glitchtip, ends):
    steps = engine.up(program(host, "glitchtip", glitchtip))
    assert steps_of(steps) == [("app-dsn-set", "update"), ("relay-install", "delete")], "the relay went before the app left it"
    assert env_dsn(host) == glitchtip["dsn"]
    no_relay_left(host)
    ends.lands("glitchtip")


def test_glitchtip_to_dual_to_sentry_each_one_flip(host, engine, glitchtip, ends):
    assert steps_of(engine.up(program(host, "dual", glitchtip))) == [("relay-install", "create"), ("app-dsn-set", "update")]
    ends.lands("both")
    assert steps_of(engine.up(program(host, "sentry"))) == [("app-dsn-set", "update"), ("relay-install", "delete")]
    assert env_dsn(host) == saas_dsn(host)
    no_relay_left(host)
    ends.lands("sentry")


def test_a_wrong_glitchtip_key_refuses_the_flip_and_the_app_stays_on_saas(host, engine, glitchtip, ends):
    """The gate tries GlitchTip's key directly before the app is pointed at the relay: one wrong-key
    request blocks the GlitchTip project for 30 s, so it must never be the app's envelopes that find out."""
    pids = host.run("pm2 jlist").stdout
    wrong = dict(glitchtip, dsn=glitchtip["dsn"].replace(relay.Dsn.parse(glitchtip["dsn"]).key, "0" * 32))
    with pytest.raises(StepFailed) as failed:
        engine.up(program(host, "dual", wrong))
    assert failed.value.result.urn.endswith("::app-dsn-set")
    message = failed.value.result.stderr
    assert "relay key check" in message and "HTTP 403" in message and "nothing on the server was changed" in message, message
    assert env_dsn(host) == saas_dsn(host)
    assert [p["pid"] for p in json.loads(pids.splitlines()[-1])] == [p["pid"] for p in json.loads(host.run("pm2 jlist").stdout.splitlines()[-1])], \
        "the app was restarted"
    ends.lands("sentry")
    glitchtip["api"].request("POST", "/_standin/reset-hooks")  # lift the 30 s block the wrong key caused


def test_destroy_from_dual_puts_the_original_back_and_leaves_no_relay(host, engine, glitchtip, ends):
    original = file_facts(host, ENV_FILE)
    engine.up(program(host, "dual", glitchtip))
    assert env_dsn(host) == relay.relay_dsn(saas_dsn(host), PORT)
    steps = engine.destroy()
    assert steps_of(steps) == [("app-dsn-set", "delete"), ("relay-install", "delete"), ("glitchtip-deploy", "delete")]
    assert file_facts(host, ENV_FILE)[0] == original[0]
    no_relay_left(host)
    marker = new_marker("gone")
    boom(host, marker)
    assert wait_until(lambda: ends.at_sentry(marker), 20), "after destroy the app does not report to Sentry"
