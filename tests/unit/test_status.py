"""scripts/status.py: parsing of recorded server outputs, evaluation, and a whole run through a fake SSH runner."""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from components.remote import SCRIPTS, bundle
from scripts import status as st
from scripts._common import RemoteResult
from tests.unit.operator_fixtures import GlitchTip, glitchtip, tool_env  # noqa: F401

DATA = Path(__file__).parent / "data" / "status"
NOW = datetime(2026, 12, 4, 21, 10, tzinfo=timezone.utc)
LIMITS = st.Thresholds()


def recorded(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


# ------------------------------------------------------------------------------ parsing recorded outputs
def test_parse_docker_inspect_and_stats_as_recorded() -> None:
    containers = st.parse_inspect(recorded("inspect"))
    assert [(c.service, c.name, c.status, c.health, c.memory_limit) for c in containers] == [
        ("glitchtip", "glitchtip_glitchtip_1", "running", None, 192 * 1024**2),
        ("postgres", "glitchtip_postgres_1", "running", "healthy", 256 * 1024**2),
    ]
    st.attach_stats(containers, st.parse_stats(recorded("stats")))
    assert containers[0].memory_used == pytest.approx(14.73 * 1024**2)
    assert containers[1].memory_used == pytest.approx(33.21 * 1024**2)
    stopped = st.parse_inspect(recorded("inspect-stopped"))[1]
    assert (stopped.status, stopped.exit_code, stopped.health) == ("exited", 0, "unhealthy")


def test_inspect_template_never_reads_the_environment() -> None:
    # .Config.Env holds SECRET_KEY and DATABASE_URL: the template names only what status shows
    assert "Env" not in st.INSPECT_FORMAT and "Config.Labels" in st.INSPECT_FORMAT


@pytest.mark.parametrize("text, expected", [
    ("14.73MiB", 14.73 * 1024**2), ("1.5GiB", 1.5 * 1024**3), ("512kB", 512_000), ("0B", 0.0), ("12", 12.0), ("n/a", None),
])
def test_parse_size(text: str, expected: float | None) -> None:
    assert st.parse_size(text) == (pytest.approx(expected) if expected is not None else None)


def test_parse_free_and_df_as_recorded() -> None:
    memory = st.parse_free(recorded("free"))
    assert (memory.total, memory.available, memory.swap_total) == (25276071936, 23645257728, 0)
    assert memory.used_percent == pytest.approx(6.45, abs=0.01)
    disks = st.parse_df(recorded("df"))
    assert [(d.mount, d.filesystem) for d in disks] == [("/", "overlay"), ("/var/lib/docker", "/dev/vda")]  # / listed twice: once
    assert disks[1].available == 80590176256 and round(disks[1].used_percent) == 26
    with pytest.raises(ValueError):
        st.parse_free("garbage")


def test_parse_backup_listing_as_recorded() -> None:
    sets, unfinished = st.parse_backup_listing(recorded("find"))
    assert [(s.name, s.complete, s.size) for s in sets] == [
        ("glitchtip-20261203T020000Z", True, 1884), ("glitchtip-20261204T020000Z", True, 1884)]
    assert unfinished == [".tmp-glitchtip-20261205T020000Z"]
    assert sets[1].stamp == datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)
    assert st.parse_manifest("# comment\nformat=1\ncreated_at=2026-12-04T02:00:41Z\nrows.users_user=1\n")["created_at"] == "2026-12-04T02:00:41Z"


# ------------------------------------------------------------------------------ evaluation
def _levels(findings: list[st.Finding]) -> dict[str, str]:
    return {f.check: f.level for f in findings}


def test_running_containers_are_ok_and_a_stopped_one_is_a_problem() -> None:
    running = st.parse_inspect(recorded("inspect"))
    st.attach_stats(running, st.parse_stats(recorded("stats")))
    findings = st.evaluate_containers(running, ("postgres", "glitchtip"), LIMITS)
    assert _levels(findings) == {"container glitchtip": "ok", "container postgres": "ok"}
    assert "14.7 MiB / 192.0 MiB (8 %)" in findings[0].detail

    stopped = st.evaluate_containers(st.parse_inspect(recorded("inspect-stopped")), ("postgres", "glitchtip"), LIMITS)
    assert _levels(stopped) == {"container glitchtip": "ok", "container postgres": "PROBLEM"}
    assert stopped[1].detail.startswith("exited (exit 0)")


def test_container_edge_cases() -> None:
    def c(**kw) -> st.Container:
        base = dict(name="x", service="glitchtip", status="running", exit_code=0, oom_killed=False, health="healthy",
                    restarts=0, memory_limit=512 * 1024**2, memory_used=100 * 1024**2)
        return st.Container(**{**base, **kw})

    assert st.evaluate_containers([c(service="migrate", status="exited")], None, LIMITS)[0].level == "ok"
    assert st.evaluate_containers([c(service="migrate", status="exited", exit_code=1)], None, LIMITS)[0].level == "PROBLEM"
    assert st.evaluate_containers([c(health="unhealthy")], None, LIMITS)[0].level == "PROBLEM"
    assert st.evaluate_containers([c(health="starting")], None, LIMITS)[0].level == "warn"
    oom = st.evaluate_containers([c(status="exited", exit_code=137, oom_killed=True)], None, LIMITS)[0]
    assert oom.level == "PROBLEM" and "exited (exit 137)" in oom.detail and "OOM-killed" in oom.detail
    high = st.evaluate_containers([c(memory_used=470 * 1024**2)], None, LIMITS)[0]
    assert high.level == "PROBLEM" and "above 90 %" in high.detail
    assert st.evaluate_containers([c(memory_used=470 * 1024**2)], None, st.Thresholds(container_memory_percent=95))[0].level == "ok"
    assert st.evaluate_containers([c(memory_limit=0)], None, LIMITS)[0].level == "warn"
    assert st.evaluate_containers([c(restarts=3)], None, LIMITS)[0].detail.endswith("restarted 3 times")
    missing = st.evaluate_containers([c()], ("postgres", "glitchtip"), LIMITS)
    assert _levels(missing)["container postgres"] == "PROBLEM"
    assert st.evaluate_containers([], None, LIMITS)[0].level == "PROBLEM"


def test_host_memory_and_disk_thresholds() -> None:
    # a 2 GB VPS with 150 MiB available
    tight = "               total        used        free      shared  buff/cache   available\n" \
            "Mem:      2061430784  1712000000   101000000     8000000   248000000   157286400\n" \
            "Swap:     1073737728   536870912   536866816\n"
    finding = st.evaluate_memory(st.parse_free(tight), LIMITS)
    assert finding.level == "PROBLEM" and finding.detail.startswith("92 % used") and "swap 512.0 MiB" in finding.detail
    assert st.evaluate_memory(st.parse_free(recorded("free")), LIMITS).level == "ok"
    disks = st.parse_df(recorded("df"))
    assert _levels(st.evaluate_disks(disks, LIMITS)) == {"disk /": "ok", "disk /var/lib/docker": "ok"}
    assert _levels(st.evaluate_disks(disks, st.Thresholds(disk_percent=20))) == {"disk /": "ok", "disk /var/lib/docker": "PROBLEM"}
    assert _levels(st.evaluate_disks(disks, st.Thresholds(disk_free_bytes=10 * 1024**3)))["disk /"] == "PROBLEM"


def test_backup_age() -> None:
    sets, unfinished = st.parse_backup_listing(recorded("find"))
    fresh = st.evaluate_backups(sets, unfinished, {"created_at": "2026-12-04T02:00:41Z", "glitchtip_version": "6.2.6"}, NOW, LIMITS)
    assert _levels(fresh) == {"backup": "ok", "backup in progress": "warn"}
    assert fresh[0].detail.startswith("newest glitchtip-20261204T020000Z, 19.2 h old, 1.8 KiB, GlitchTip 6.2.6; 2 set(s) kept")
    old = st.evaluate_backups(sets, [], None, NOW + timedelta(days=3), LIMITS)  # no manifest: the name's time
    assert old[0].level == "PROBLEM" and "3.8 d old" in old[0].detail and "older than 26 h" in old[0].detail
    assert st.evaluate_backups([], [], None, NOW, LIMITS)[0].level == "PROBLEM"
    sets[1].complete = False
    broken = st.evaluate_backups(sets, [], None, NOW, LIMITS)
    assert broken[0].detail.startswith("newest glitchtip-20261203T020000Z") and _levels(broken)["backup sets"] == "warn"


def _monitor(**kw) -> dict:
    base = {"monitorType": "GET", "name": "glitchtip self health", "interval": 60, "isUp": True,
            "created": "2026-12-01T00:00:00Z", "checks": [{"isUp": True, "startCheck": "2026-12-04T21:09:30Z"}]}
    return {**base, **kw}


def test_heartbeat_and_scheduler() -> None:
    beat = _monitor(monitorType="Heartbeat", name="backup heartbeat", interval=90000,
                    checks=[{"isUp": True, "startCheck": "2026-12-04T02:01:00Z"}])
    good = st.evaluate_monitors([beat, _monitor()], NOW)
    assert _levels(good) == {"heartbeat backup heartbeat": "ok", "uptime checks": "ok"}
    assert good[0].detail == "up, last ping 19.1 h ago"
    down = st.evaluate_monitors([dict(beat, isUp=False, lastChange="2026-12-04T07:01:00Z")], NOW)
    assert down[0].level == "PROBLEM" and down[0].detail.startswith("down since 2026-12-04T07:01:00Z")
    silent = st.evaluate_monitors([dict(beat, checks=[{"isUp": True, "startCheck": "2026-12-02T02:01:00Z"}])], NOW)
    assert silent[0].level == "PROBLEM" and "is GlitchTip's worker running?" in silent[0].detail
    never = st.evaluate_monitors([dict(beat, isUp=None, checks=[])], NOW)
    assert never[0].level == "warn" and never[0].detail.startswith("no ping yet")
    stalled = st.evaluate_monitors([_monitor(checks=[{"isUp": True, "startCheck": "2026-12-04T20:50:00Z"}])], NOW)
    assert _levels(stalled) == {"heartbeat": "warn", "uptime checks": "PROBLEM"}
    assert "last check 20 min ago" in stalled[1].detail and "scheduler may have stopped" in stalled[1].detail
    assert st.evaluate_monitors([_monitor(isUp=False)], NOW)[1].detail.endswith("down: glitchtip self health")
    assert _levels(st.evaluate_monitors([beat], NOW, heartbeat_name="other"))["heartbeat"] == "warn"


def test_app_dsn_target() -> None:
    on_glitchtip = {"app": "127.0.0.1:8000", "glitchtip": "127.0.0.1:8000"}
    assert st.evaluate_dsn(on_glitchtip, "glitchtip").level == "ok"
    wrong = st.evaluate_dsn(on_glitchtip, "sentry")
    assert wrong.level == "PROBLEM" and "dsnTarget is sentry" in wrong.detail
    on_sentry = st.evaluate_dsn({"app": "o4508.ingest.sentry.io", "glitchtip": "127.0.0.1:8000"}, "sentry")
    assert on_sentry.level == "ok" and "o4508.ingest.sentry.io" in on_sentry.detail
    assert st.evaluate_dsn({"app": "o4508.ingest.sentry.io", "glitchtip": "127.0.0.1:8000"}, "glitchtip").level == "PROBLEM"
    assert st.evaluate_dsn({}, None).level == "PROBLEM"
    assert st.parse_dsn_hosts("app 127.0.0.1:9000\nglitchtip -\n") == {"app": "127.0.0.1:9000"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_show_dsn_hosts_prints_hosts_and_never_the_key(tmp_path: Path) -> None:
    key = "5d0f6a8c1e2b4a7f9c3d2e1f0a9b8c7d"
    env = tmp_path / ".env"
    env.write_text(f"NODE_ENV=production\nSENTRY_DSN=https://{key}@o4508.ingest.sentry.io/4508123\n"
                   f"# cut over\nexport SENTRY_DSN=\"http://{key}@127.0.0.1:8000/1\" # glitchtip\nAPI_TOKEN=\"abc#1$x\"\n")
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  glitchtip:\n    environment:\n      GLITCHTIP_DOMAIN: http://127.0.0.1:8000\n")
    program = bundle("show-dsn-hosts.sh")  # lib.sh and app-env.sh, as status.py sends it

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", program, "show-dsn-hosts.sh", *args], capture_output=True, text=True, cwd=SCRIPTS, timeout=30)

    done = run(str(env), str(compose))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "app 127.0.0.1:8000\nglitchtip 127.0.0.1:8000\n"  # the last assignment wins, as in dotenv
    assert key not in done.stdout + done.stderr
    env.write_text("NODE_ENV=production\n")
    missing = run(str(env), str(compose))
    assert missing.returncode == 1 and "assigns no SENTRY_DSN" in missing.stderr
    assert run(str(tmp_path / "nope"), str(compose)).returncode == 1


# ------------------------------------------------------------------------------ a whole run through a fake SSH runner
class FakeRunner:
    """Answers status's remote commands with recorded outputs; keeps every command it was given."""

    def __init__(self, answers: dict[str, RemoteResult]) -> None:
        self.answers = answers
        self.commands: list[str] = []

    def run(self, command: str, *, privileged: bool = True, timeout: float = 60.0) -> RemoteResult:
        self.commands.append(command)
        for needle, result in self.answers.items():
            if needle in command:
                return result
        return RemoteResult(127, "", f"unexpected command: {command[:40]}")


def _answers(inspect: str, manifest_created: datetime) -> dict[str, RemoteResult]:
    ok = lambda out: RemoteResult(0, out, "")  # noqa: E731
    return {
        "docker inspect": ok(recorded(inspect)),
        "docker stats": ok(recorded("stats")),
        "free -b": ok(recorded("free")),
        "df -B1": ok(recorded("df")),
        "manifest.txt": ok(f"format=1\nname=glitchtip-20261204T020000Z\ncreated_at={manifest_created:%Y-%m-%dT%H:%M:%SZ}\n"),
        "find ": ok(recorded("find")),
        "show-dsn-hosts.sh": ok("app 127.0.0.1:9000\nglitchtip 127.0.0.1:8000\n"),
    }


@pytest.fixture()
def server_args(glitchtip: GlitchTip, tmp_path: Path) -> list[str]:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot used: the runner is fake\n-----END OPENSSH PRIVATE KEY-----\n")
    org = "acme"
    beat = glitchtip.api.create_monitor(org, {"monitorType": "Heartbeat", "name": "web-app backup heartbeat", "url": "",
                                              "expectedStatus": None, "expectedBody": "", "interval": 90000, "timeout": None, "project": "1"})
    glitchtip.api.ping_heartbeat(org, beat["endpointID"])
    return ["--api-url", glitchtip.url, "--no-tunnel", "--ssh-host", "127.0.0.1", "--ssh-key-file", str(key),
            "--ssh-host-key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "--services", "postgres,glitchtip", "--expect-dsn-target", "sentry"]


def _run_with(monkeypatch, runner: FakeRunner, argv: list[str], capsys) -> tuple[int, str]:
    @contextmanager
    def fake_ssh_runner(target):
        assert target.host == "127.0.0.1" and target.host_key.startswith("ssh-ed25519 ")
        yield runner

    monkeypatch.setattr(st, "ssh_runner", fake_ssh_runner)
    rc = st.main(argv)
    return rc, capsys.readouterr().out


def test_a_healthy_server_exits_0(server_args: list[str], monkeypatch, capsys) -> None:
    runner = FakeRunner(_answers("inspect", datetime.now(timezone.utc) - timedelta(hours=5)))
    rc, out = _run_with(monkeypatch, runner, server_args, capsys)
    assert rc == 0, out
    assert "status: OK (" in out
    for check in ("glitchtip", "container glitchtip", "container postgres", "host memory", "disk /var/lib/docker",
                  "backup", "heartbeat web-app backup heartbeat", "app DSN"):
        assert any(line.startswith(check + " ") and " ok " in line for line in out.splitlines()), f"{check} not ok in:\n{out}"
    assert "healthy, version 6.2.6-standin" in out and "points at 127.0.0.1:9000 (not GlitchTip" in out
    inspect = next(c for c in runner.commands if "docker inspect" in c)
    assert "label=com.docker.compose.project=glitchtip" in inspect and "Env" not in inspect
    assert any(c.startswith("find /var/backups/glitchtip ") for c in runner.commands)
    assert any("/opt/ai-admin/.env" in c and "/opt/glitchtip/compose.yaml" in c for c in runner.commands)


def test_a_stopped_container_and_an_old_backup_are_problems(server_args: list[str], monkeypatch, capsys) -> None:
    runner = FakeRunner(_answers("inspect-stopped", datetime.now(timezone.utc) - timedelta(days=3)))
    rc, out = _run_with(monkeypatch, runner, server_args, capsys)
    assert rc == 1
    problems = [line for line in out.splitlines() if " PROBLEM " in line]
    assert [p.split(" PROBLEM ")[0].strip() for p in problems] == ["container postgres", "backup"], out
    assert out.rstrip().splitlines()[-1].startswith("status: 2 problem(s)") and out.rstrip().endswith("container postgres, backup")


def test_json_quiet_and_a_failing_probe(server_args: list[str], monkeypatch, capsys) -> None:
    answers = _answers("inspect", datetime.now(timezone.utc))
    answers["docker inspect"] = RemoteResult(1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
    rc, out = _run_with(monkeypatch, FakeRunner(answers), server_args + ["--json"], capsys)
    report = json.loads(out)
    assert rc == 1 and report["ok"] is False and report["problems"] == 1
    failed = [c for c in report["checks"] if c["level"] == "PROBLEM"]
    assert failed == [{"check": "containers", "level": "PROBLEM", "detail": "docker inspect failed: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"}]
    assert any(c["check"] == "host memory" and c["level"] == "ok" for c in report["checks"])  # the other probes still ran

    rc, out = _run_with(monkeypatch, FakeRunner(_answers("inspect", datetime.now(timezone.utc))), server_args + ["--quiet"], capsys)
    assert rc == 0 and "PROBLEM" not in out and all(" ok " not in line for line in out.splitlines())


def test_status_needs_ssh(glitchtip: GlitchTip, capsys) -> None:
    rc = st.run_main("status", st.main, ["--api-url", glitchtip.url])
    assert rc == 2 and "status needs SSH to the server" in capsys.readouterr().err
