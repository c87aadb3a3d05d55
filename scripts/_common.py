"""Shared by the operator tools (verify_capture.py, load_test.py, status.py).

- Where things are: every setting comes from a flag, else an environment variable, else
  the Pulumi stack (`pulumi stack output --json --show-secrets` and `pulumi config --json
  --show-secrets`, run only when a value is still missing and the tool runs inside the
  project), else the default declared in Pulumi.yaml.
- How GlitchTip is reached: directly at --api-url, or through a verified SSH tunnel to
  the server's loopback (components/glitchtip/tunnel.py) when it listens only there.
  A DSN that names the server's loopback is rewritten to the tunnel's local end.
- Remote commands for status: one paramiko connection with the pinned host key.
- sentry-sdk clients with a transport that remembers which events it lost and why.
- Plain-text tables.

Secrets (API token, DSN key, SSH key) are never printed: DSNs are shown as their host only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sentry_sdk  # noqa: E402
from sentry_sdk.envelope import Envelope  # noqa: E402
from sentry_sdk.transport import HttpTransport  # noqa: E402

from components.glitchtip.client import GlitchTipClient, GlitchTipError  # noqa: E402
from components.glitchtip.tunnel import SshTarget, TunnelError, connect, open_tunnel  # noqa: E402
from components.settings import PROJECT, project_defaults  # noqa: E402

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2

# Stack outputs the tools read (the program exports them; flags and env vars override).
OUTPUT_API_URL = "glitchtipUrl"
OUTPUT_TOKEN = "glitchtipApiToken"
OUTPUT_DSN = "glitchtipDsn"
OUTPUT_ORG = "glitchtipOrg"
OUTPUT_PROJECT = "glitchtipProject"
OUTPUT_ADMIN_EMAIL = "adminEmail"
OUTPUT_ADMIN_PASSWORD = "adminPassword"

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class ToolError(Exception):
    """The tool cannot run: a missing or bad setting, or an unreachable server. One sentence."""


# ------------------------------------------------------------------------------ entry point
def run_main(name: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a tool's main(); turn setup failures into one line on stderr and exit code 2."""
    try:
        return main(argv)
    except (ToolError, TunnelError, GlitchTipError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------ arguments
def add_connection_args(parser: argparse.ArgumentParser, *, dsn: bool = False) -> None:
    """Flags naming the GlitchTip API, the project and the server (each with an env var)."""
    api = parser.add_argument_group("GlitchTip (default: the Pulumi stack's outputs)")
    api.add_argument("--api-url", help=f"GlitchTip's base URL [GLITCHTIP_API_URL; stack output {OUTPUT_API_URL}]. "
                     "A loopback URL is reached through the SSH tunnel.")
    api.add_argument("--token", help=f"API token [GLITCHTIP_TOKEN, preferred: arguments show in `ps`; stack output {OUTPUT_TOKEN}]")
    api.add_argument("--org", help=f"organization slug [GLITCHTIP_ORG; stack output {OUTPUT_ORG}; else the only one]")
    api.add_argument("--project", help=f"project slug [GLITCHTIP_PROJECT; stack output {OUTPUT_PROJECT}; else the only one]")
    if dsn:
        api.add_argument("--dsn", help=f"DSN to send with [GLITCHTIP_DSN; stack output {OUTPUT_DSN}; else the project's first key]")
    api.add_argument("--http-timeout", type=float, default=30.0, help="seconds per API call (default 30)")
    add_ssh_args(parser, tunnel=True)


def add_ssh_args(parser: argparse.ArgumentParser, *, tunnel: bool = False) -> None:
    """Flags naming the server and the Pulumi stack (a tool that only runs remote commands needs just these)."""
    ssh = parser.add_argument_group("SSH to the server (default: the stack's config)")
    ssh.add_argument("--ssh-host", help="server address [GLITCHTIP_SSH_HOST; config host]")
    ssh.add_argument("--ssh-port", type=int, help="[GLITCHTIP_SSH_PORT; config sshPort]")
    ssh.add_argument("--ssh-user", help="[GLITCHTIP_SSH_USER; config sshUser]")
    ssh.add_argument("--ssh-host-key", help="the server's pinned host key, 'ssh-ed25519 AAAA...' [GLITCHTIP_SSH_HOST_KEY; config sshHostKey]")
    ssh.add_argument("--ssh-key-file", help="private key file [GLITCHTIP_SSH_KEY_FILE; config sshPrivateKey / sshPrivateKeyPath]")
    if tunnel:
        ssh.add_argument("--remote-port", type=int, help="GlitchTip's port on the server's 127.0.0.1 [GLITCHTIP_PORT; config glitchtipPort]")
        ssh.add_argument("--no-tunnel", action="store_true", help="never open an SSH tunnel (e.g. an `ssh -L` is already running)")
    stack = parser.add_argument_group("Pulumi")
    stack.add_argument("--stack", help="Pulumi stack to read (default: the selected one)")
    stack.add_argument("--no-pulumi", action="store_true", help="do not run the pulumi CLI [GLITCHTIP_NO_PULUMI=1]")


# ------------------------------------------------------------------------------ Pulumi stack
def parse_stack_outputs(text: str) -> dict[str, Any]:
    """`pulumi stack output --json [--show-secrets]`: a JSON object. '[secret]' (not shown) counts as absent."""
    data = json.loads(text or "{}")
    if not isinstance(data, dict):
        raise ToolError("`pulumi stack output --json` did not print a JSON object.")
    return {k: v for k, v in data.items() if v not in (None, "", "[secret]")}


def parse_stack_config(text: str, project: str = PROJECT) -> dict[str, Any]:
    """`pulumi config --json --show-secrets`: {"project:key": {"value": ..., "objectValue": ...}} -> {key: value}."""
    data = json.loads(text or "{}")
    if not isinstance(data, dict):
        raise ToolError("`pulumi config --json` did not print a JSON object.")
    config: dict[str, Any] = {}
    for full_key, entry in data.items():
        namespace, _, key = full_key.rpartition(":")
        if namespace != project or not isinstance(entry, dict):
            continue
        value = entry.get("objectValue", entry.get("value"))
        if value is not None and value != "[secret]":
            config[key] = value
    return config


class PulumiStack:
    """The stack's outputs and config, read lazily (the CLI runs only if a value is still missing)."""

    def __init__(self, stack: str | None = None, *, enabled: bool = True, cwd: Path = ROOT,
                 warn: Callable[[str], None] | None = None) -> None:
        self.stack = stack
        self.cwd = cwd
        self.enabled = enabled and (cwd / "Pulumi.yaml").exists() and shutil.which("pulumi") is not None
        self._warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
        self._outputs: dict[str, Any] | None = None
        self._config: dict[str, Any] | None = None

    def _run(self, args: list[str]) -> str | None:
        cmd = ["pulumi", *args, "--json", "--show-secrets"] + (["--stack", self.stack] if self.stack else [])
        try:
            done = subprocess.run(cmd, cwd=self.cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._warn(f"`pulumi {' '.join(args)}` could not run ({exc}); using flags and environment only.")
            return None
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            self._warn(f"`pulumi {' '.join(args)}` failed ({first}); using flags and environment only.")
            return None
        return done.stdout

    def output(self, key: str) -> Any:
        if self._outputs is None:
            text = self._run(["stack", "output"]) if self.enabled else None
            self._outputs = parse_stack_outputs(text) if text else {}
        return self._outputs.get(key)

    def config(self, key: str, *, default: bool = True) -> Any:
        """A config value of the stack, else (unless default=False) Pulumi.yaml's default for the key."""
        if self._config is None:
            text = self._run(["config"]) if self.enabled else None
            self._config = parse_stack_config(text) if text else {}
        value = self._config.get(key)
        if value in (None, "") and default:
            return project_defaults().get(key)
        return value


# ------------------------------------------------------------------------------ where things are
@dataclass
class Target:
    """Where GlitchTip and the server are, resolved once per run."""

    api_url: str | None
    token: str | None = field(repr=False)
    admin_email: str | None
    admin_password: str | None = field(repr=False)
    """Without a token, the API is used with the superuser's session (the stack exports both)."""
    org: str | None
    project: str | None
    dsn: str | None = field(repr=False)
    ssh: SshTarget | None
    remote_port: int
    tunnel_allowed: bool
    stack: PulumiStack = field(repr=False)
    http_timeout: float = 30.0

    def config(self, key: str) -> Any:
        """A server-side setting (installDir, backupDir, appEnvFile, dsnTarget...) from the stack or Pulumi.yaml."""
        return self.stack.config(key)


def _first(*values: Any) -> Any:
    for value in values:
        if value not in (None, ""):
            return value
    return None


def load_target(args: argparse.Namespace, *, stack: PulumiStack | None = None) -> Target:
    """Resolve flags > environment > Pulumi stack > Pulumi.yaml defaults."""
    env = os.environ.get
    no_pulumi = bool(getattr(args, "no_pulumi", False)) or env("GLITCHTIP_NO_PULUMI", "") not in ("", "0")
    stack = stack or PulumiStack(getattr(args, "stack", None), enabled=not no_pulumi)

    def pick(flag: str, env_name: str, output: str | None = None, config: str | None = None) -> Any:
        value = _first(getattr(args, flag, None), env(env_name))
        if value is None and output:
            value = stack.output(output)
        if value is None and config:
            value = stack.config(config)
        return value

    api_url = pick("api_url", "GLITCHTIP_API_URL", OUTPUT_API_URL)
    remote_port = int(pick("remote_port", "GLITCHTIP_PORT", config="glitchtipPort") or 8000)
    ssh_host = pick("ssh_host", "GLITCHTIP_SSH_HOST", config="host")
    ssh = None
    if ssh_host:
        host_key = pick("ssh_host_key", "GLITCHTIP_SSH_HOST_KEY", config="sshHostKey")
        if not host_key:
            raise ToolError(f"no host key for {ssh_host}: pass --ssh-host-key 'ssh-ed25519 AAAA...' (the server is always verified).")
        key_file = _first(getattr(args, "ssh_key_file", None), env("GLITCHTIP_SSH_KEY_FILE"))
        key_text = _read_key(key_file) if key_file else stack.config("sshPrivateKey") or None
        if not key_text and stack.config("sshPrivateKeyPath"):
            key_text = _read_key(str(stack.config("sshPrivateKeyPath")))
        if not key_text:
            raise ToolError(f"no SSH private key for {ssh_host}: pass --ssh-key-file PATH (or set GLITCHTIP_SSH_KEY_FILE).")
        ssh = SshTarget(
            host=str(ssh_host),
            host_key=str(host_key),
            private_key=str(key_text),
            user=str(pick("ssh_user", "GLITCHTIP_SSH_USER", config="sshUser") or "root"),
            port=int(pick("ssh_port", "GLITCHTIP_SSH_PORT", config="sshPort") or 22),
        )
    return Target(
        api_url=str(api_url).rstrip("/") if api_url else None,
        token=pick("token", "GLITCHTIP_TOKEN", OUTPUT_TOKEN),
        admin_email=_first(env("GLITCHTIP_ADMIN_EMAIL"), stack.output(OUTPUT_ADMIN_EMAIL)),
        admin_password=_first(env("GLITCHTIP_ADMIN_PASSWORD"), stack.output(OUTPUT_ADMIN_PASSWORD)),
        org=pick("org", "GLITCHTIP_ORG", OUTPUT_ORG),
        project=pick("project", "GLITCHTIP_PROJECT", OUTPUT_PROJECT),
        dsn=pick("dsn", "GLITCHTIP_DSN", OUTPUT_DSN) if hasattr(args, "dsn") else None,
        ssh=ssh,
        remote_port=remote_port,
        tunnel_allowed=not getattr(args, "no_tunnel", False),
        stack=stack,
        http_timeout=float(getattr(args, "http_timeout", 30.0) or 30.0),
    )


def _read_key(path: str) -> str:
    try:
        return Path(os.path.expanduser(path)).read_text()
    except OSError as exc:
        raise ToolError(f"cannot read the SSH private key file {path}: {exc.strerror or exc}.") from None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dsn_host(dsn: str | None) -> str:
    """host[:port] of a DSN or URL, without the key: the only part of a DSN the tools print."""
    if not dsn:
        return "-"
    parts = urlsplit(dsn)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def rewrite_dsn(dsn: str, base_url: str) -> str:
    """The DSN with its host:port replaced by base_url's (the tunnel's local end); key and project kept."""
    parts, base = urlsplit(dsn), urlsplit(base_url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{base.netloc}" if userinfo else base.netloc
    return urlunsplit((base.scheme, netloc, parts.path, parts.query, parts.fragment))


# ------------------------------------------------------------------------------ the API
@dataclass
class Api:
    """A reachable GlitchTip: its local base URL, a client, and whether a tunnel carries it."""

    base_url: str
    client: GlitchTipClient
    tunneled: bool

    def local_dsn(self, dsn: str) -> str:
        """Through a tunnel, a DSN naming the server's loopback must go to the tunnel's local end."""
        return rewrite_dsn(dsn, self.base_url) if self.tunneled and is_loopback(urlsplit(dsn).hostname) else dsn


@contextmanager
def glitchtip_api(target: Target) -> Iterator[Api]:
    """Reach GlitchTip directly, or through the SSH tunnel when it listens only on the server's loopback."""
    api_host = urlsplit(target.api_url).hostname if target.api_url else None
    if target.ssh is not None and target.tunnel_allowed and (target.api_url is None or is_loopback(api_host)):
        port = (urlsplit(target.api_url).port if target.api_url else None) or target.remote_port
        with open_tunnel(target.ssh, remote_port=port) as base_url:
            yield Api(base_url, GlitchTipClient(base_url, target.token, timeout=target.http_timeout), tunneled=True)
        return
    if target.api_url is None:
        raise ToolError("GlitchTip's address is unknown: pass --api-url URL, or --ssh-host (with --ssh-host-key and --ssh-key-file) to tunnel to it.")
    yield Api(target.api_url, GlitchTipClient(target.api_url, target.token, timeout=target.http_timeout), tunneled=False)


def authenticate(api: Api, target: Target) -> None:
    """Token auth as configured; without a token, a session of the superuser (adminEmail/adminPassword)."""
    if target.token:
        return
    if target.admin_email and target.admin_password:
        api.client.login(str(target.admin_email), str(target.admin_password))
        return
    raise ToolError(f"no API credentials: set GLITCHTIP_TOKEN (or --token), or GLITCHTIP_ADMIN_EMAIL and "
                    f"GLITCHTIP_ADMIN_PASSWORD; inside the project the stack's {OUTPUT_ADMIN_EMAIL}/{OUTPUT_ADMIN_PASSWORD} serve.")


def resolve_org(client: GlitchTipClient, org: str | None) -> str:
    """The given organization slug, or the only one the credentials can see."""
    if org:
        return org
    slugs = [o["slug"] for o in client.organizations()]
    if len(slugs) != 1:
        raise ToolError(f"pass --org: the credentials see {len(slugs)} organizations ({', '.join(slugs) or 'none'}).")
    return slugs[0]


def resolve_project(client: GlitchTipClient, org: str | None, project: str | None) -> tuple[str, str]:
    """(org, project) slugs: the given ones, or the only ones the credentials can see."""
    org = resolve_org(client, org)
    if not project:
        slugs = [p["slug"] for p in client.projects(org)]
        if len(slugs) != 1:
            raise ToolError(f"pass --project: organization {org} has {len(slugs)} projects ({', '.join(slugs) or 'none'}).")
        project = slugs[0]
    return org, project


def resolve_dsn(client: GlitchTipClient, org: str, project: str, dsn: str | None) -> str:
    """The given DSN, else the public DSN of the project's first client key."""
    if dsn:
        return dsn
    keys = client.keys(org, project)
    if not keys:
        raise ToolError(f"project {org}/{project} has no client key (DSN): pass --dsn.")
    return str(keys[0]["dsn"]["public"])


@dataclass
class ProjectAccess:
    """A healthy GlitchTip, the project to send to, and the DSN as this machine must use it."""

    api: Api
    org: str
    project: str
    dsn: str = field(repr=False)


@contextmanager
def glitchtip_project(target: Target) -> Iterator[ProjectAccess]:
    """What verify_capture and load_test need before sending: health, token, project, DSN."""
    with glitchtip_api(target) as api:
        if not api.client.health():
            raise ToolError(f"GlitchTip at {api.base_url} is not healthy (/_health/ did not answer 200).")
        authenticate(api, target)
        org, project = resolve_project(api.client, target.org, target.project)
        dsn = api.local_dsn(resolve_dsn(api.client, org, project, target.dsn))
        yield ProjectAccess(api, org, project, dsn)


# ------------------------------------------------------------------------------ remote commands
@dataclass(frozen=True)
class RemoteResult:
    rc: int
    stdout: str
    stderr: str


class SshRunner:
    """Runs commands on the server over one verified paramiko connection.

    Commands that read root-owned files or talk to Docker run through `sudo -n` when the
    SSH user is not root (the stack requires root or passwordless sudo).
    """

    def __init__(self, client: Any, *, sudo: bool) -> None:
        self._client = client
        self.sudo = sudo

    def run(self, command: str, *, privileged: bool = True, timeout: float = 60.0) -> RemoteResult:
        if privileged and self.sudo:
            command = f"sudo -n sh -c {shlex.quote(command)}"
        transport = self._client.get_transport()
        channel = transport.open_session(timeout=15)
        try:
            channel.exec_command(command)
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise ToolError(f"a remote command did not finish within {timeout:.0f} s: {command.split()[0]} ...")
                select.select([channel], [], [], 0.1)
            return RemoteResult(channel.recv_exit_status(), out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
        finally:
            channel.close()


@contextmanager
def ssh_runner(ssh: SshTarget) -> Iterator[SshRunner]:
    client = connect(ssh)
    try:
        yield SshRunner(client, sudo=ssh.user != "root")
    finally:
        client.close()


# ------------------------------------------------------------------------------ sentry-sdk
def _event_ids(envelope: Envelope) -> list[str]:
    ids = []
    for item in envelope.items:
        if item.data_category == "error":
            event = item.get_event() or {}
            if event.get("event_id"):
                ids.append(str(event["event_id"]))
    return ids


class CountingTransport(HttpTransport):
    """sentry-python's HTTP transport, remembering which error events it lost, and why.

    The SDK loses events silently (a full queue, a rate-limit backoff, a network error,
    a non-2xx answer): `record_lost_event` sees each of them except a 429, whose answer
    is caught here too. `attempted` holds the events the worker thread tried to send;
    an event neither attempted nor lost when the client closes was still queued
    (the flush timed out).
    """

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._counting_lock = threading.Lock()
        self._reason = threading.local()
        self.attempted: set[str] = set()
        self.lost: dict[str, str] = {}
        self.lost_reasons: Counter[str] = Counter()

    def _lose(self, event_id: str | None, reason: str) -> None:
        with self._counting_lock:
            if event_id and event_id in self.lost:
                return
            self.lost_reasons[reason] += 1
            if event_id:
                self.lost[event_id] = reason

    def _send_envelope(self, envelope: Envelope) -> None:
        with self._counting_lock:
            self.attempted.update(_event_ids(envelope))
        super()._send_envelope(envelope)

    def on_dropped_event(self, reason: str) -> None:
        self._reason.last = reason
        super().on_dropped_event(reason)

    def record_lost_event(self, reason: str, data_category: Any = None, item: Any = None, *, quantity: int = 1) -> None:
        category = item.data_category if item is not None else data_category
        if category == "error":
            dropped = getattr(self._reason, "last", "")
            label = dropped if dropped.startswith("status_") else reason
            event = (item.get_event() if item is not None else None) or {}
            self._lose(event.get("event_id"), label)
        super().record_lost_event(reason, data_category, item, quantity=quantity)

    def _handle_response(self, response: Any, envelope: Envelope | None) -> None:
        if response.status == 429 and envelope is not None:
            for event_id in _event_ids(envelope):
                self._lose(event_id, "status_429")
        super()._handle_response(response=response, envelope=envelope)


def sdk_client(dsn: str, *, queue_size: int = 100, **options: Any) -> sentry_sdk.Client:
    """A sentry-python client with the counting transport, no integrations and no sessions.

    `client.transport` is the CountingTransport. A DSN on loopback bypasses any HTTP proxy.
    """
    loopback = is_loopback(urlsplit(dsn).hostname)
    settings: dict[str, Any] = dict(
        dsn=dsn,
        transport=CountingTransport,
        transport_queue_size=queue_size,
        default_integrations=False,
        auto_enabling_integrations=False,
        auto_session_tracking=False,  # GlitchTip drops sessions
        send_client_reports=False,  # GlitchTip drops client reports; the transport counts losses itself
        shutdown_timeout=0,
    )
    if loopback:
        settings.update(http_proxy="", https_proxy="")
    settings.update(options)
    return sentry_sdk.Client(**settings)


@contextmanager
def bound_client(client: sentry_sdk.Client) -> Iterator[sentry_sdk.Scope]:
    """Fresh scopes whose captures and breadcrumbs go to `client` (and nowhere else).

    The forks start empty: nothing the process recorded before (breadcrumbs, tags, user)
    rides along with the events.
    """
    with sentry_sdk.isolation_scope() as scope:
        scope.clear()
        scope.set_client(client)
        with sentry_sdk.new_scope() as current:
            current.clear()
            current.set_client(client)
            yield scope


# ------------------------------------------------------------------------------ output
def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart, a dashed rule under the header."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
