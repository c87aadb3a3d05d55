"""DockerHost on the real throwaway server, run by the engine stand-in as `pulumi up` would.

The server already has Docker (Debian's docker.io and a compose shim): this proves the
"already installed, skipped" path, the daemon.json merge, preflight's real checks and
its refusals. The repository download path is proven by tests/unit/test_host_scripts.py
(no route to Docker's servers from here).
"""

from __future__ import annotations

import json

import pytest

from components.remote import render_script
from tests.harness import prod_config, run_program
from tests.integration.engine import Engine, StepFailed, run_over_ssh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def program(testhost):
    config = prod_config(host=testhost.address, sshHostKey=testhost.host_key, sshPrivateKey=testhost.private_key)
    program = run_program(config)
    assert program.error is None, program.error
    return program.only("vps")


@pytest.fixture(scope="module")
def applied(testhost, program):
    engine = Engine()
    before = testhost.run("cat /etc/docker/daemon.json 2>/dev/null || true").stdout
    steps = engine.up(program)
    return engine, steps, before


def test_up_runs_preflight_then_skips_the_docker_install(applied):
    engine, steps, _ = applied
    assert [(s.urn.rsplit("::", 1)[1], s.operation) for s in steps] == [("vps-preflight", "create"), ("vps-docker", "create")]
    preflight, docker = steps
    assert "os=debian-12" in preflight.stdout and "arch=amd64" in preflight.stdout
    assert "the server meets every requirement" in preflight.stderr
    assert "with the compose plugin is already installed, skipped" in docker.stderr
    assert docker.stdout.startswith("docker=") and "compose=" in docker.stdout


def test_daemon_json_gets_log_rotation_and_live_restore(testhost, applied):
    daemon = json.loads(testhost.read_file("/etc/docker/daemon.json"))
    assert daemon["log-driver"] == "json-file" and daemon["live-restore"] is True
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert testhost.run("stat -c %a /etc/docker/daemon.json").stdout.strip() == "644"
    assert testhost.run("docker info --format '{{.LiveRestoreEnabled}}'").stdout.strip() == "true"


def test_second_up_changes_nothing(testhost, program, applied):
    engine, _, _ = applied
    assert engine.up(program) == [], "an unchanged program ran steps again"
    before = testhost.run("stat -c '%Y.%y %i' /etc/docker/daemon.json").stdout
    dockerd = testhost.run("pgrep -x dockerd").stdout
    rerun = engine.reapply()  # as if every script were re-run (a new connection, an edited script)
    assert all("already installed, skipped" in s.stderr for s in rerun if s.urn.endswith("vps-docker"))
    assert any("already has log rotation and live-restore, skipped" in s.stderr for s in rerun)
    assert testhost.run("stat -c '%Y.%y %i' /etc/docker/daemon.json").stdout == before
    assert testhost.run("pgrep -x dockerd").stdout == dockerd, "dockerd was restarted by a no-op run"


def test_destroy_leaves_docker_installed(testhost, program):
    engine = Engine()
    engine.up(program)
    assert [s.operation for s in engine.destroy()] == ["delete", "delete"]
    assert testhost.run("docker info --format '{{.ServerVersion}}'").stdout.strip()


def _preflight(testhost, port="8000", mem="512", disk="1"):
    connection = dict(host=testhost.address, port=22, user="root", hostKey=testhost.host_key, privateKey=testhost.private_key)
    return run_over_ssh(connection, render_script("preflight.sh", [port, mem, disk]), None, "preflight", "create")


def test_preflight_refuses_too_little_disk(testhost):
    result = _preflight(testhost, disk="100000")
    assert result.exit_code == 1
    assert "GiB free under /var/lib/docker, images and data need 100000 GiB: free disk space or grow the volume" in result.stderr


def test_preflight_refuses_too_little_memory(testhost):
    result = _preflight(testhost, mem="9999999")
    assert result.exit_code == 1 and "GlitchTip's memory budget needs 9999999 MiB" in result.stderr


def test_preflight_refuses_a_port_taken_by_another_program(testhost):
    testhost.run("setsid python3 -m http.server 8799 --bind 127.0.0.1 >/dev/null 2>&1 < /dev/null & echo $! > /tmp/http8799.pid;"
                 " for _ in $(seq 50); do ss -Hltn 'sport = :8799' | grep -q . && break; sleep 0.1; done")
    try:
        result = _preflight(testhost, port="8799")
    finally:
        testhost.run("kill $(cat /tmp/http8799.pid)")
    assert result.exit_code == 1
    assert "port 8799 is already taken by another program: free it or choose another glitchtipPort" in result.stderr


def test_preflight_refuses_an_unsupported_os(testhost):
    testhost.run("cp -P /etc/os-release /tmp/os-release.keep && rm /etc/os-release"
                 " && printf 'ID=centos\\nVERSION_ID=\"7\"\\n' > /etc/os-release")
    try:
        result = _preflight(testhost)
    finally:
        testhost.run("rm -f /etc/os-release && cp -P /tmp/os-release.keep /etc/os-release")
    assert result.exit_code == 1
    assert "unsupported OS 'centos 7': use Debian 11-13 or Ubuntu 22.04/24.04" in result.stderr
    assert _preflight(testhost).exit_code == 0, "the server's os-release was not restored"


def test_a_failed_step_stops_the_run_like_the_engine(testhost, program):
    bad = program.only("vps")
    preflight = bad.named("vps-preflight")
    preflight.inputs = {**preflight.inputs, "create": render_script("preflight.sh", ["8000", "9999999", "1"])}
    engine = Engine()
    with pytest.raises(StepFailed, match="memory budget needs 9999999 MiB"):
        engine.up(bad)
    assert [s.urn.rsplit("::", 1)[1] for s in engine.log] == ["vps-preflight"], "Docker was installed after a failed preflight"
