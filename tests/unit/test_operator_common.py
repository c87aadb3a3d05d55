"""scripts/_common.py: settings from flags / env / the Pulumi stack, the tunnel decision, the counting transport, tables."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import sentry_sdk

from scripts import _common as common
from tests.unit.operator_fixtures import GlitchTip, glitchtip, tool_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n"


def parse(*argv: str, dsn: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    common.add_connection_args(parser, dsn=dsn)
    return parser.parse_args(list(argv))


# ------------------------------------------------------------------------------ the Pulumi stack
OUTPUTS = {"glitchtipUrl": "http://127.0.0.1:8000", "dsnTarget": "sentry", "adminEmail": "admin@example.com",
           "adminPassword": "s3cret-admin-pw", "glitchtipApiToken": "[secret]"}
CONFIG = {
    "glitchtip-migration:host": {"value": "203.0.113.10", "secret": False},
    "glitchtip-migration:sshHostKey": {"value": HOST_KEY, "secret": False},
    "glitchtip-migration:sshPrivateKey": {"value": PRIVATE_KEY, "secret": True},
    "glitchtip-migration:sshPort": {"value": "2222", "secret": False},
    "glitchtip-migration:appPm2Apps": {"value": "[\"ai-admin-api\"]", "objectValue": ["ai-admin-api"], "secret": False},
    "other-project:host": {"value": "198.51.100.1", "secret": False},
}


def test_parse_stack_outputs_and_config() -> None:
    outputs = common.parse_stack_outputs(json.dumps(OUTPUTS))
    assert "glitchtipApiToken" not in outputs  # shown without --show-secrets: absent, never the literal
    assert outputs["glitchtipUrl"] == "http://127.0.0.1:8000"
    config = common.parse_stack_config(json.dumps(CONFIG))
    assert config["host"] == "203.0.113.10" and config["appPm2Apps"] == ["ai-admin-api"] and config["sshPort"] == "2222"
    assert "other-project:host" not in config and len(config) == 5
    with pytest.raises(common.ToolError):
        common.parse_stack_outputs("[]")


@pytest.fixture()
def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool_env: None) -> Path:
    """A `pulumi` on PATH that answers `stack output` and `config` like the CLI, logging its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    script = bin_dir / "pulumi"
    script.write_text(f"""#!{sys.executable}
import json, sys
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["stack", "output"]:
    print(open({str(tmp_path / "outputs.json")!r}).read())
elif sys.argv[1] == "config":
    print(open({str(tmp_path / "config.json")!r}).read())
else:
    sys.exit("unexpected")
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("GLITCHTIP_NO_PULUMI")
    return log


def test_inside_the_project_everything_comes_from_the_stack(fake_pulumi: Path) -> None:
    target = common.load_target(parse("--stack", "prod"))
    assert target.api_url == "http://127.0.0.1:8000"
    assert (target.admin_email, target.admin_password, target.token) == ("admin@example.com", "s3cret-admin-pw", None)
    assert target.ssh is not None and (target.ssh.host, target.ssh.port, target.ssh.user) == ("203.0.113.10", 2222, "root")
    assert target.ssh.private_key == PRIVATE_KEY and target.ssh.host_key == HOST_KEY
    assert target.remote_port == 8000  # Pulumi.yaml's default for glitchtipPort
    assert target.config("backupDir") == "/var/backups/glitchtip" and target.stack.config("dsnTarget", default=False) is None
    calls = [json.loads(line) for line in fake_pulumi.read_text().splitlines()]
    assert calls == [["stack", "output", "--json", "--show-secrets", "--stack", "prod"],
                     ["config", "--json", "--show-secrets", "--stack", "prod"]]  # each run once, then cached
    assert "s3cret-admin-pw" not in repr(target) and "PRIVATE KEY" not in repr(target)


def test_flags_beat_env_beat_the_stack(fake_pulumi: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfrom file\n-----END OPENSSH PRIVATE KEY-----\n")
    monkeypatch.setenv("GLITCHTIP_API_URL", "https://env.example.com")
    monkeypatch.setenv("GLITCHTIP_SSH_USER", "deploy")
    monkeypatch.setenv("GLITCHTIP_SSH_KEY_FILE", str(key_file))
    target = common.load_target(parse("--api-url", "https://flag.example.com/", "--ssh-port", "22"))
    assert target.api_url == "https://flag.example.com"
    assert target.ssh.user == "deploy" and target.ssh.port == 22 and "from file" in target.ssh.private_key
    assert target.ssh.host == "203.0.113.10"  # nothing closer: from the stack's config


def test_no_pulumi_means_no_cli_and_missing_ssh_parts_are_named(fake_pulumi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = common.load_target(parse("--no-pulumi", "--api-url", "http://127.0.0.1:9"))
    assert target.ssh is None and target.config("installDir") == "/opt/glitchtip"
    assert not fake_pulumi.exists()
    with pytest.raises(common.ToolError, match="no host key for 192.0.2.1"):
        common.load_target(parse("--no-pulumi", "--ssh-host", "192.0.2.1"))
    with pytest.raises(common.ToolError, match="no SSH private key for 192.0.2.1: pass --ssh-key-file"):
        common.load_target(parse("--no-pulumi", "--ssh-host", "192.0.2.1", "--ssh-host-key", HOST_KEY))


def test_a_failing_pulumi_is_a_warning(tmp_path: Path, fake_pulumi: Path, capsys) -> None:
    (tmp_path / "outputs.json").unlink()  # the fake now exits with a traceback
    warnings: list[str] = []
    stack = common.PulumiStack(warn=warnings.append)
    assert stack.output("glitchtipUrl") is None and stack.output("adminEmail") is None
    assert len(warnings) == 1 and warnings[0].startswith("`pulumi stack output` failed (")


# ------------------------------------------------------------------------------ DSNs and the tunnel
def test_dsn_helpers() -> None:
    dsn = "http://0123456789abcdef0123456789abcdef@127.0.0.1:8000/1"
    assert common.dsn_host(dsn) == "127.0.0.1:8000" and common.dsn_host("https://k@o1.ingest.sentry.io/42") == "o1.ingest.sentry.io"
    assert common.rewrite_dsn(dsn, "http://127.0.0.1:40123") == "http://0123456789abcdef0123456789abcdef@127.0.0.1:40123/1"
    assert [common.is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "10.0.0.1", "example.com", None)] == \
        [True, True, True, True, False, False, False]


def _target(**kw) -> common.Target:
    base = dict(api_url=None, token="t", admin_email=None, admin_password=None, org=None, project=None, dsn=None,
                ssh=common.SshTarget(host="192.0.2.1", host_key=HOST_KEY, private_key=PRIVATE_KEY), remote_port=8000,
                tunnel_allowed=True, stack=common.PulumiStack(enabled=False))
    return common.Target(**{**base, **kw})


def test_the_tunnel_is_opened_only_for_the_servers_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []

    @contextmanager
    def fake_tunnel(ssh, remote_port):
        opened.append(remote_port)
        yield "http://127.0.0.1:40123"

    monkeypatch.setattr(common, "open_tunnel", fake_tunnel)
    with common.glitchtip_api(_target()) as api:
        assert api.tunneled and api.base_url == "http://127.0.0.1:40123"
        assert api.local_dsn("http://k@127.0.0.1:8000/1") == "http://k@127.0.0.1:40123/1"
        assert api.local_dsn("https://k@glitchtip.example.com/1") == "https://k@glitchtip.example.com/1"
    with common.glitchtip_api(_target(api_url="http://127.0.0.1:8001")):
        pass
    with common.glitchtip_api(_target(api_url="https://glitchtip.example.com")) as api:
        assert not api.tunneled and api.local_dsn("http://k@127.0.0.1:8000/1") == "http://k@127.0.0.1:8000/1"
    with common.glitchtip_api(_target(api_url="http://127.0.0.1:8000", tunnel_allowed=False)) as api:
        assert not api.tunneled
    assert opened == [8000, 8001]
    with pytest.raises(common.ToolError, match="GlitchTip's address is unknown"):
        with common.glitchtip_api(_target(ssh=None)):
            pass


# ------------------------------------------------------------------------------ the counting transport
def test_the_transport_names_what_it_lost(glitchtip: GlitchTip) -> None:
    sentry_sdk.add_breadcrumb(message="recorded by the process before the tool's scopes")
    glitchtip.hook("throttle", {"count": 1, "retryAfter": 1})
    client = common.sdk_client(glitchtip.dsn)
    transport = client.transport
    with common.bound_client(client):
        sentry_sdk.add_breadcrumb(message="inside")
        assert [b["message"] for b in sentry_sdk.get_isolation_scope()._breadcrumbs] == ["inside"]
        throttled = sentry_sdk.capture_message("first: answered 429")
        client.flush(timeout=5)
        backed_off = sentry_sdk.capture_message("second: inside the Retry-After window")
        client.flush(timeout=5)
    client.close(timeout=2)
    assert transport.lost == {throttled: "status_429", backed_off: "ratelimit_backoff"}
    assert transport.attempted == {throttled, backed_off}
    assert glitchtip.state()["eventsReceived"] == 0
    assert sentry_sdk.get_client() is not client  # bound to its own scopes only, never the process's


# ------------------------------------------------------------------------------ output and entry points
def test_format_table_and_humans() -> None:
    assert common.format_table(["A", "LONGER"], [["x", 1], ["yy", None]]) == "A   LONGER\n--  ------\nx   1\nyy"
    assert [common.human_bytes(v) for v in (None, 512, 1536, 3 * 1024**3)] == ["-", "512 B", "1.5 KiB", "3.0 GiB"]
    assert [common.human_duration(v) for v in (None, 2.04, 45, 600, 19.2 * 3600, 3 * 86400)] == \
        ["-", "2.0 s", "45 s", "10 min", "19.2 h", "3.0 d"]


@pytest.mark.parametrize("tool", ["verify_capture.py", "load_test.py", "status.py"])
def test_each_tool_runs_as_a_script(tool: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / tool), "--help"], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {tool}") and "Exit status: 0" in done.stdout and "--ssh-host-key" in done.stdout


class _Channel:
    def __init__(self, log: list[str]) -> None:
        self.log, self._out, self._err = log, [b"line 1\n", b"line 2\n"], [b"warning\n"]

    def exec_command(self, command: str) -> None:
        self.log.append(command)

    def shutdown_write(self) -> None: ...
    def recv_ready(self) -> bool: return bool(self._out)
    def recv(self, n: int) -> bytes: return self._out.pop(0)
    def recv_stderr_ready(self) -> bool: return bool(self._err)
    def recv_stderr(self, n: int) -> bytes: return self._err.pop(0)
    def exit_status_ready(self) -> bool: return True
    def recv_exit_status(self) -> int: return 3
    def fileno(self) -> int: raise AssertionError("not waited on: everything was ready")
    def close(self) -> None: self.log.append("closed")


class _Client:
    def __init__(self) -> None:
        self.log: list[str] = []

    def get_transport(self):
        client = self

        class _Transport:
            def open_session(self, timeout: float) -> _Channel:
                return _Channel(client.log)
        return _Transport()


def test_ssh_runner_collects_output_and_uses_sudo_for_other_users() -> None:
    client = _Client()
    result = common.SshRunner(client, sudo=False).run("docker ps -aq")
    assert result == common.RemoteResult(3, "line 1\nline 2\n", "warning\n")
    assert client.log == ["docker ps -aq", "closed"]
    client.log.clear()
    common.SshRunner(client, sudo=True).run("find '/var/backups/glitch tip' -printf '%P\\n'")
    assert client.log[0] == "sudo -n sh -c 'find '\"'\"'/var/backups/glitch tip'\"'\"' -printf '\"'\"'%P\\n'\"'\"''"
    client.log.clear()
    common.SshRunner(client, sudo=True).run("id -u", privileged=False)
    assert client.log[0] == "id -u"
