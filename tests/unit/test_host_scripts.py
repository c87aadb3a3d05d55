"""DockerHost's scripts, run for real with bash on this machine against fake system files and commands.

The download path of install-docker.sh cannot reach Docker's repository from here: it runs
with stand-in apt-get/curl/gpg/dpkg/apt-cache commands that record what they were asked,
so the test proves the order and arguments (keyring, deb822 source, pinned version,
hold), not that Docker's servers answer. The real server path (Docker already present)
runs in tests/integration.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from components.remote import SCRIPTS, bundle

DEBIAN_12 = 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'


def run(script: str, *args: str, env: dict[str, str] | None = None, path: str | None = None) -> subprocess.CompletedProcess:
    """Run the bundled script exactly as the server would receive it (bash -c BUNDLE NAME ARGS)."""
    full_env = {"PATH": path or os.environ["PATH"], "HOME": "/tmp", "LANG": "C.UTF-8", **(env or {})}
    return subprocess.run(
        ["bash", "-c", bundle(script), script, *args], env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def system(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "os-release").write_text(DEBIAN_12)
    (tmp_path / "meminfo").write_text("MemTotal:        1999000 kB\nMemFree: 1000 kB\n")
    return {"OS_RELEASE": str(tmp_path / "os-release"), "MEMINFO": str(tmp_path / "meminfo"), "DISK_CHECK_DIR": str(tmp_path)}


def test_shell_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing: run the README's setup command (make setup)")
    scripts = sorted(str(p) for p in Path(SCRIPTS).rglob("*.sh"))
    assert len(scripts) >= 4
    result = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, cwd=SCRIPTS.parent.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_preflight_passes_and_reports(system):
    result = run("preflight.sh", str(_free_port()), "1536", "1", env=system)
    assert result.returncode == 0, result.stderr
    assert "os=debian-12" in result.stdout and "mem_mb=1952" in result.stdout
    assert "(free)" in result.stdout
    assert "meets every requirement" in result.stderr


@pytest.mark.parametrize(
    "os_release,message",
    [
        ('ID=centos\nVERSION_ID="7"\n', "unsupported OS 'centos 7': use Debian 11-13 or Ubuntu 22.04/24.04"),
        ('ID=ubuntu\nVERSION_ID="18.04"\n', "unsupported OS 'ubuntu 18.04'"),
    ],
)
def test_preflight_refuses_unsupported_os(system, os_release, message):
    Path(system["OS_RELEASE"]).write_text(os_release)
    result = run("preflight.sh", str(_free_port()), "512", "1", env=system)
    assert result.returncode == 1
    assert message in result.stderr


def test_preflight_refuses_too_little_memory(system):
    result = run("preflight.sh", str(_free_port()), "4096", "1", env=system)
    assert result.returncode == 1
    assert "the server has 1952 MiB of RAM, GlitchTip's memory budget needs 4096 MiB" in result.stderr


def test_preflight_refuses_too_little_disk(system):
    result = run("preflight.sh", str(_free_port()), "512", "999999", env=system)
    assert result.returncode == 1
    assert "GiB free under" in result.stderr and "need 999999 GiB" in result.stderr


def test_preflight_refuses_a_taken_port(system):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run("preflight.sh", str(port), "512", "1", env=system)
    assert result.returncode == 1
    assert f"port {port} is already taken by another program: free it or choose another glitchtipPort" in result.stderr


def test_preflight_without_arguments_says_usage(system):
    result = run("preflight.sh", env=system)
    assert result.returncode != 0 and "usage: preflight.sh PORT MIN_MEM_MB MIN_DISK_GB" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE = """#!/bin/bash
printf '%s\\n' "$(basename "$0") $*" >> "$FAKE_LOG"
case "$(basename "$0") $1" in
  "apt-cache madison") printf ' docker-ce | 5:28.5.2-1~debian.12~bookworm | https://download.docker.com/linux/debian bookworm/stable amd64 Packages\\n docker-ce | 5:28.5.1-1~debian.12~bookworm | x\\n' ;;
  "dpkg --print-architecture") echo amd64 ;;
  "curl "*) out=""; while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done; echo KEY > "$out" ;;
  "gpg "*) echo "fpr:::::::::9DC858229FC7DD38854AE2D88D81803C0EBFCD88:" ;;
  "apt-get install") for p in "$@"; do case "$p" in docker-ce=*) cp "$FAKE_DIR/docker.fake" "$FAKE_DIR/docker"; chmod +x "$FAKE_DIR/docker";; esac; done ;;
esac
"""
FAKE_DOCKER = """#!/bin/bash
printf '%s\\n' "docker $*" >> "$FAKE_LOG"
case "$1" in
  compose) echo "v2.40.3" ;;
  version) echo "28.5.2" ;;
  info) exit 0 ;;
esac
"""


@pytest.fixture
def fake_system(tmp_path: Path, system: dict[str, str]) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "apt-cache", "apt-mark", "curl", "gpg", "dpkg"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "docker.fake").write_text(FAKE_DOCKER)
    for d in ("keyrings", "sources", "docker"):
        (tmp_path / d).mkdir()
    return {
        **system,
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_DIR": str(bin_dir),
        "KEYRING_DIR": str(tmp_path / "keyrings"),
        "SOURCES_DIR": str(tmp_path / "sources"),
        "DOCKER_ETC": str(tmp_path / "docker"),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
    }


def test_install_docker_download_path_pins_the_version(fake_system, tmp_path):
    result = run("install-docker.sh", "28.5.2", env=fake_system, path=fake_system["PATH"])
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert "curl -fsSL https://download.docker.com/linux/debian/gpg -o " + fake_system["KEYRING_DIR"] + "/docker.asc.new" in calls
    install = next(c for c in calls if c.startswith("apt-get install") and "docker-ce=" in c)
    assert "docker-ce=5:28.5.2-1~debian.12~bookworm" in install and "docker-compose-plugin" in install
    assert "apt-mark hold docker-ce docker-ce-cli" in calls
    assert calls.index(install) > max(i for i, c in enumerate(calls) if c.startswith("apt-get update"))
    sources = (tmp_path / "sources" / "docker.sources").read_text()
    assert sources == (
        "Types: deb\nURIs: https://download.docker.com/linux/debian\nSuites: bookworm\nComponents: stable\n"
        f"Architectures: amd64\nSigned-By: {fake_system['KEYRING_DIR']}/docker.asc\n"
    )
    assert stat.S_IMODE((tmp_path / "sources" / "docker.sources").stat().st_mode) == 0o644
    daemon = json.loads((tmp_path / "docker" / "daemon.json").read_text())
    assert daemon == {"live-restore": True, "log-driver": "json-file", "log-opts": {"max-file": "3", "max-size": "10m"}}
    assert result.stdout.strip() == "docker=28.5.2 compose=v2.40.3"


def test_install_docker_refuses_an_unknown_version(fake_system):
    result = run("install-docker.sh", "27.0.0", env=fake_system, path=fake_system["PATH"])
    assert result.returncode == 1
    assert "docker-ce 27.0.0 is not in Docker's repository; available: 5:28.5.2-1~debian.12~bookworm" in result.stderr


def test_install_docker_refuses_a_wrong_signing_key(fake_system, tmp_path):
    gpg = Path(fake_system["FAKE_DIR"]) / "gpg"
    gpg.write_text("#!/bin/bash\necho 'fpr:::::::::0000000000000000000000000000000000000000:'\n")
    result = run("install-docker.sh", "28.5.2", env=fake_system, path=fake_system["PATH"])
    assert result.returncode == 1 and "did not have the expected fingerprint" in result.stderr
    assert not any((tmp_path / "keyrings").iterdir()), "an untrusted key was left in the keyring"
    assert not (tmp_path / "sources" / "docker.sources").exists()


def test_install_docker_skips_when_present_and_merges_daemon_json(fake_system, tmp_path):
    shutil.copy(Path(fake_system["FAKE_DIR"]) / "docker.fake", Path(fake_system["FAKE_DIR"]) / "docker")
    (Path(fake_system["FAKE_DIR"]) / "docker").chmod(0o755)
    original = {"registry-mirrors": ["http://127.0.0.1:5000"], "log-opts": {"labels": "app"}}
    daemon_json = tmp_path / "docker" / "daemon.json"
    daemon_json.write_text(json.dumps(original))
    first = run("install-docker.sh", "28.5.2", env=fake_system, path=fake_system["PATH"])
    assert first.returncode == 0, first.stderr
    assert "already installed, skipped" in first.stderr
    merged = json.loads(daemon_json.read_text())
    assert merged["registry-mirrors"] == ["http://127.0.0.1:5000"] and merged["log-opts"]["labels"] == "app"
    assert merged["log-opts"]["max-size"] == "10m" and merged["live-restore"] is True
    assert json.loads((tmp_path / "docker" / "daemon.json.pre-glitchtip").read_text()) == original
    calls = (tmp_path / "calls.log").read_text()
    assert "apt-get install" not in calls and "curl" not in calls
    before = daemon_json.stat()
    second = run("install-docker.sh", "28.5.2", env=fake_system, path=fake_system["PATH"])
    assert second.returncode == 0 and "already has log rotation and live-restore, skipped" in second.stderr
    after = daemon_json.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino), "a second run rewrote daemon.json"
