#!/usr/bin/env python3
"""One look at the GlitchTip deployment, for a person or for cron: GlitchTip's health and
version, each container's state and memory against its limit, the host's RAM and disks,
the age of the newest backup set, the heartbeat and uptime monitors (is the scheduler
alive?), and where the app's SENTRY_DSN points (host only, never the key).

Remote facts come over one SSH connection with the pinned host key (`docker inspect`
with a template that leaves out the containers' environment, which holds secrets;
`docker stats --no-stream`, `free -b`, `df -B1`, the backup directory's listing and
the newest set's manifest.txt, and components/remote/show-dsn-hosts.sh). The API is
reached through the SSH tunnel when GlitchTip listens only on the server's loopback.

    .venv/bin/python scripts/status.py                # inside the project: reads the stack
    */10 * * * * cd /srv/glitchtip-migration && .venv/bin/python scripts/status.py --quiet || notify ...

Exit status: 0 no problem (warnings allowed), 1 at least one problem, 2 cannot run
(no SSH settings, SSH refused, host key mismatch).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):  # run as a script: make `components` and `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.glitchtip.client import GlitchTipClient, GlitchTipError, GlitchTipNotFound  # noqa: E402
from components.remote import render_script  # noqa: E402
from components.settings import services_for  # noqa: E402
from scripts._common import (  # noqa: E402
    EXIT_OK,
    EXIT_PROBLEM,
    Api,
    RemoteResult,
    Target,
    ToolError,
    add_connection_args,
    authenticate,
    format_table,
    glitchtip_api,
    human_bytes,
    human_duration,
    load_target,
    resolve_org,
    run_main,
    ssh_runner,
)

TOOL = "status"
OK, WARN, PROBLEM, SKIP = "ok", "warn", "PROBLEM", "skip"
ONE_SHOT_SERVICES = ("migrate",)
"""Compose services that run once and exit 0 (split mode's migrations)."""

# `docker inspect` through a template: only these fields, never .Config.Env (secrets).
INSPECT_FORMAT = (
    '{"id":{{json .Id}},"name":{{json .Name}},'
    '"service":{{json (index .Config.Labels "com.docker.compose.service")}},'
    '"status":{{json .State.Status}},"exitCode":{{json .State.ExitCode}},"oomKilled":{{json .State.OOMKilled}},'
    '"startedAt":{{json .State.StartedAt}},'
    '"health":{{with index .State "Health"}}{{json .Status}}{{else}}null{{end}},'  # no Health key without a healthcheck
    '"restarts":{{json .RestartCount}},"memoryLimit":{{json .HostConfig.Memory}}}'
)
SET_NAME = re.compile(r"^glitchtip-(\d{8}T\d{6}Z)(-final)?$")
"""A backup set's directory name (components/remote/backup.sh): glitchtip-YYYYMMDDTHHMMSSZ[-final]."""


class Runner(Protocol):
    def run(self, command: str, *, privileged: bool = True, timeout: float = 60.0) -> RemoteResult: ...


@dataclass
class Finding:
    check: str
    level: str
    detail: str


@dataclass(frozen=True)
class Thresholds:
    container_memory_percent: float = 90.0
    host_memory_percent: float = 90.0
    disk_percent: float = 85.0
    disk_free_bytes: int = 2 * 1024**3
    backup_age_hours: float = 26.0


# ------------------------------------------------------------------------------ parsing
_SIZE = re.compile(r"^\s*([\d.]+)\s*([KMGTPE]?i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5}


def parse_size(text: str) -> float | None:
    """'231.5MiB' -> bytes (docker's binary and decimal units); None when unreadable."""
    match = _SIZE.match(text or "")
    if not match:
        return None
    return float(match.group(1)) * _UNITS.get((match.group(2) or "").lower(), 1)


@dataclass
class Container:
    name: str
    service: str
    status: str
    exit_code: int
    oom_killed: bool
    health: str | None
    restarts: int
    memory_limit: int
    """HostConfig.Memory in bytes; 0 = no limit."""
    id: str = ""
    memory_used: float | None = None


def parse_inspect(text: str) -> list[Container]:
    """Lines printed by `docker inspect --format INSPECT_FORMAT`."""
    containers = []
    for line in text.splitlines():
        if not line.strip():
            continue
        data = json.loads(line)
        containers.append(Container(
            id=str(data.get("id") or ""),
            name=str(data.get("name") or "").lstrip("/"),
            service=str(data.get("service") or data.get("name") or "").lstrip("/"),
            status=str(data.get("status") or "unknown"),
            exit_code=int(data.get("exitCode") or 0),
            oom_killed=bool(data.get("oomKilled")),
            health=data.get("health"),
            restarts=int(data.get("restarts") or 0),
            memory_limit=int(data.get("memoryLimit") or 0),
        ))
    return containers


def parse_stats(text: str) -> dict[str, float]:
    """`docker stats --no-stream --format '{{json .}}'` -> memory used in bytes, by container id (12+ chars) and name."""
    used: dict[str, float] = {}
    for line in text.splitlines():
        if not line.strip().startswith("{"):
            continue
        data = json.loads(line)
        value = parse_size(str(data.get("MemUsage", "")).split("/")[0])
        if value is None:
            continue
        for key in (data.get("ID"), data.get("Container"), data.get("Name")):
            if key:
                used[str(key)] = value
    return used


def attach_stats(containers: list[Container], used: dict[str, float]) -> None:
    for c in containers:
        for key in (c.id, c.id[:12], c.name):
            if key and key in used:
                c.memory_used = used[key]
                break


@dataclass
class Memory:
    total: int
    available: int
    swap_total: int
    swap_used: int

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.total - self.available) / self.total if self.total else 0.0


def parse_free(text: str) -> Memory:
    """`free -b` (procps): the Mem: row by the header's column names; Swap: total and used."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    header = next((l for l in lines if "total" in l), None)
    mem = next((l for l in lines if l[0] == "Mem:"), None)
    swap = next((l for l in lines if l[0] == "Swap:"), ["Swap:", "0", "0"])
    if header is None or mem is None:
        raise ValueError("`free -b` printed no Mem: row")
    values = dict(zip(header, (int(v) for v in mem[1:])))
    available = values.get("available", values.get("free", 0) + values.get("buff/cache", 0))
    return Memory(total=values["total"], available=available, swap_total=int(swap[1]), swap_used=int(swap[2]))


@dataclass
class Disk:
    filesystem: str
    size: int
    used: int
    available: int
    mount: str

    @property
    def used_percent(self) -> float:
        # df's Capacity: used / (used + available), rounded up; reserved blocks count as full
        return 100.0 * self.used / (self.used + self.available) if self.used + self.available else 0.0


def parse_df(text: str) -> list[Disk]:
    """`df -B1 -P PATH...`: one Disk per mount point, in first-seen order."""
    disks: dict[str, Disk] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 6 or not parts[1].isdigit():
            continue
        mount = " ".join(parts[5:])
        disks.setdefault(mount, Disk(parts[0], int(parts[1]), int(parts[2]), int(parts[3]), mount))
    return list(disks.values())


@dataclass
class BackupSet:
    name: str
    stamp: datetime
    complete: bool
    size: int
    files: list[str] = field(default_factory=list)


def parse_backup_listing(text: str) -> tuple[list[BackupSet], list[str]]:
    """`find DIR -mindepth 1 -maxdepth 2 -printf '%T@\\t%y\\t%s\\t%P\\n'` -> (sets oldest first, unfinished .tmp- names).

    A set is complete when its SHA256SUMS is there (backup.sh writes it last, then renames
    the set into place).
    """
    sets: dict[str, BackupSet] = {}
    unfinished: list[str] = []
    rows = []
    for line in text.splitlines():
        parts = line.split("\t", 3)
        if len(parts) == 4:
            rows.append(parts)
    for _, kind, _, path in rows:
        if "/" in path or kind != "d":
            continue
        match = SET_NAME.match(path)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            sets[path] = BackupSet(path, stamp, complete=False, size=0)
        elif path.startswith(".tmp-glitchtip-"):
            unfinished.append(path)
    for _, kind, size, path in rows:
        top, _, name = path.partition("/")
        if name and top in sets and kind == "f":
            sets[top].files.append(name)
            sets[top].size += int(size)
    for backup in sets.values():
        backup.complete = "SHA256SUMS" in backup.files
    return sorted(sets.values(), key=lambda b: b.stamp), unfinished


def parse_manifest(text: str) -> dict[str, str]:
    """manifest.txt: key=value lines, '#' comments."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601 (GlitchTip's '...Z', backup.sh's date -u +%FT%TZ) -> aware datetime."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_dsn_hosts(text: str) -> dict[str, str]:
    """show-dsn-hosts.sh's 'app HOST' / 'glitchtip HOST' lines."""
    hosts = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key in ("app", "glitchtip") and value and value != "-":
            hosts[key] = value
    return hosts


# ------------------------------------------------------------------------------ evaluating
def evaluate_containers(containers: list[Container], expected: Sequence[str] | None, limits: Thresholds) -> list[Finding]:
    findings = []
    if not containers:
        return [Finding("containers", PROBLEM, "no container of the compose project: is GlitchTip deployed?")]
    for c in sorted(containers, key=lambda c: c.service):
        level, notes = OK, []
        if c.status == "running":
            state = "running" + (f", {c.health}" if c.health else "")
            if c.health == "unhealthy":
                level = PROBLEM
            elif c.health == "starting":
                level = WARN
        elif c.status == "exited" and c.exit_code == 0 and c.service in ONE_SHOT_SERVICES:
            state = "completed (exit 0)"
        else:
            state = f"{c.status} (exit {c.exit_code})" if c.status in ("exited", "dead") else c.status
            level = PROBLEM
        if c.oom_killed:
            notes.append("OOM-killed: raise its memory limit (memoryBudgetMb)")
            level = PROBLEM
        if c.memory_limit <= 0:
            notes.append("no memory limit")
            level = max(level, WARN, key=_rank)
            memory = human_bytes(c.memory_used)
        elif c.memory_used is not None:
            pct = 100.0 * c.memory_used / c.memory_limit
            memory = f"{human_bytes(c.memory_used)} / {human_bytes(c.memory_limit)} ({pct:.0f} %)"
            if pct >= limits.container_memory_percent:
                notes.append(f"memory above {limits.container_memory_percent:g} % of its limit")
                level = PROBLEM
        else:
            memory = f"- / {human_bytes(c.memory_limit)}"
        if c.restarts:
            notes.append(f"restarted {c.restarts} times")
            level = max(level, WARN, key=_rank)
        detail = f"{state}; memory {memory}" + (f"; {'; '.join(notes)}" if notes else "")
        findings.append(Finding(f"container {c.service}", level, detail))
    present = {c.service for c in containers}
    for service in expected or ():
        if service not in present:
            findings.append(Finding(f"container {service}", PROBLEM, "no container: the service is missing"))
    return findings


def evaluate_memory(memory: Memory, limits: Thresholds) -> Finding:
    detail = (f"{memory.used_percent:.0f} % used ({human_bytes(memory.available)} available of {human_bytes(memory.total)})"
              + (f"; swap {human_bytes(memory.swap_used)} of {human_bytes(memory.swap_total)}" if memory.swap_total else "; no swap"))
    level = PROBLEM if memory.used_percent >= limits.host_memory_percent else OK
    return Finding("host memory", level, detail)


def evaluate_disks(disks: list[Disk], limits: Thresholds) -> list[Finding]:
    findings = []
    for disk in disks:
        detail = f"{disk.used_percent:.0f} % used, {human_bytes(disk.available)} free of {human_bytes(disk.size)} ({disk.filesystem})"
        low = disk.used_percent >= limits.disk_percent or disk.available < limits.disk_free_bytes
        findings.append(Finding(f"disk {disk.mount}", PROBLEM if low else OK, detail))
    return findings or [Finding("disk", WARN, "df printed nothing")]


def evaluate_backups(sets: list[BackupSet], unfinished: list[str], manifest: dict[str, str] | None,
                     now: datetime, limits: Thresholds) -> list[Finding]:
    findings = []
    complete = [s for s in sets if s.complete]
    if not complete:
        findings.append(Finding("backup", PROBLEM, "no complete backup set"))
    else:
        newest = complete[-1]
        created = parse_time((manifest or {}).get("created_at")) or newest.stamp
        age = (now - created).total_seconds()
        version = (manifest or {}).get("glitchtip_version")
        detail = (f"newest {newest.name}, {human_duration(age)} old, {human_bytes(newest.size)}"
                  + (f", GlitchTip {version}" if version else "") + f"; {len(complete)} set(s) kept")
        level = PROBLEM if age > limits.backup_age_hours * 3600 else OK
        if level == PROBLEM:
            detail += f"; older than {limits.backup_age_hours:g} h: is the backup cron job running?"
        findings.append(Finding("backup", level, detail))
    broken = [s.name for s in sets if not s.complete]
    if broken:
        findings.append(Finding("backup sets", WARN, f"incomplete (no SHA256SUMS): {', '.join(broken)}"))
    if unfinished:
        findings.append(Finding("backup in progress", WARN, f"a backup is running or was interrupted: {', '.join(unfinished)}"))
    return findings


def evaluate_monitors(monitors: list[dict[str, Any]], now: datetime, heartbeat_name: str | None = None) -> list[Finding]:
    """The heartbeat monitor(s), and whether uptime checks still run (GlitchTip's scheduler)."""
    findings = []
    beats = [m for m in monitors if m.get("monitorType") == "Heartbeat" and (not heartbeat_name or m.get("name") == heartbeat_name)]
    if not beats:
        findings.append(Finding("heartbeat", WARN, f"no heartbeat monitor{f' named {heartbeat_name!r}' if heartbeat_name else ''}: backups are not watched"))
    for m in beats:
        last = _last_check(m)
        interval = int(m.get("interval") or 0)
        ago = (now - last).total_seconds() if last else None
        since = f"last ping {human_duration(ago)} ago" if last else "no ping yet"
        if m.get("isUp") is False:
            level, detail = PROBLEM, f"down since {m.get('lastChange') or '?'}; {since}"
        elif m.get("isUp") is None:
            level, detail = WARN, f"{since} (created {m.get('created')})"
        elif ago is not None and interval and ago > interval:
            level, detail = PROBLEM, f"{since}, longer than its interval ({human_duration(interval)}), yet still up: is GlitchTip's worker running?"
        else:
            level, detail = OK, f"up, {since}"
        findings.append(Finding(f"heartbeat {m.get('name')}", level, detail))
    checked = [m for m in monitors if m.get("monitorType") != "Heartbeat"]
    if not checked:
        findings.append(Finding("uptime checks", SKIP, "no uptime monitor: nothing shows whether GlitchTip's scheduler runs"))
        return findings
    stale = []
    for m in checked:
        interval = int(m.get("interval") or 60)
        grace = 3 * interval + 120
        last = _last_check(m)
        created = parse_time(m.get("created"))
        reference = last or created
        if reference is not None and (now - reference).total_seconds() > grace:
            stale.append(f"{m.get('name')} ({'last check ' + human_duration((now - last).total_seconds()) + ' ago' if last else 'never checked'})")
    if stale:
        findings.append(Finding("uptime checks", PROBLEM, f"stalled: {'; '.join(stale)}: GlitchTip's worker/scheduler may have stopped"))
    else:
        down = [m.get("name") for m in checked if m.get("isUp") is False]
        findings.append(Finding("uptime checks", PROBLEM if down else OK,
                                f"{len(checked)} monitor(s) checked on time" + (f"; down: {', '.join(map(str, down))}" if down else "")))
    return findings


def _last_check(monitor: dict[str, Any]) -> datetime | None:
    stamps = [parse_time(c.get("startCheck")) for c in monitor.get("checks") or []]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None


def evaluate_dsn(hosts: dict[str, str], expected: str | None) -> Finding:
    app, glitchtip = hosts.get("app"), hosts.get("glitchtip")
    if not app:
        return Finding("app DSN", PROBLEM, "the app's SENTRY_DSN could not be read")
    if not glitchtip:
        return Finding("app DSN", WARN, f"points at {app}; GlitchTip's own host is unknown")
    target = "glitchtip" if app == glitchtip else "sentry"
    if expected == "dual" and target == "sentry" and app.startswith("127.0.0.1:"):
        target = "dual"  # the relay on the server's loopback (components/relay.py)
    detail = f"points at {app} ({'GlitchTip' if target == 'glitchtip' else 'not GlitchTip: Sentry or a relay'})"
    if expected and expected != target:
        return Finding("app DSN", PROBLEM, f"{detail}, but dsnTarget is {expected}: run `pulumi up`")
    return Finding("app DSN", OK, detail + (f", as dsnTarget={expected}" if expected else ""))


def _rank(level: str) -> int:
    return {SKIP: 0, OK: 1, WARN: 2, PROBLEM: 3}[level]


# ------------------------------------------------------------------------------ collecting
@dataclass
class Options:
    compose_project: str
    install_dir: str
    backup_dir: str
    app_env_file: str
    expected_services: tuple[str, ...] | None
    expected_dsn_target: str | None
    heartbeat_name: str | None
    thresholds: Thresholds


class RemoteFailed(Exception):
    """A remote probe failed; becomes a PROBLEM finding under `check`, the other checks go on."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


def _remote(runner: Runner, command: str, check: str, what: str) -> RemoteResult:
    """Run a probe; no output and a non-zero exit is a failure (df, for one, exits 1 with output)."""
    result = runner.run(command)
    if result.rc != 0 and not result.stdout.strip():
        last = (result.stderr.strip().splitlines() or [f"exit {result.rc}"])[-1]
        raise RemoteFailed(check, f"{what} failed: {last}")
    return result


def check_containers(runner: Runner, opts: Options) -> list[Finding]:
    label = shlex.quote(f"label=com.docker.compose.project={opts.compose_project}")
    inspect = _remote(runner, f"ids=$(docker ps -aq --filter {label}) && if [ -n \"$ids\" ]; then "
                      f"docker inspect --format {shlex.quote(INSPECT_FORMAT)} $ids; fi", "containers", "docker inspect")
    containers = parse_inspect(inspect.stdout)
    if any(c.status == "running" for c in containers):
        stats = _remote(runner, f"docker stats --no-stream --format '{{{{json .}}}}' $(docker ps -q --filter {label})", "containers", "docker stats")
        attach_stats(containers, parse_stats(stats.stdout))
    return evaluate_containers(containers, opts.expected_services, opts.thresholds)


def check_host(runner: Runner, opts: Options) -> list[Finding]:
    memory = evaluate_memory(parse_free(_remote(runner, "free -b", "host memory", "free").stdout), opts.thresholds)
    paths = " ".join(shlex.quote(p) for p in ("/", "/var/lib/docker", opts.install_dir, opts.backup_dir))
    disks = evaluate_disks(parse_df(_remote(runner, f"df -B1 -P {paths} 2>/dev/null; true", "disk", "df").stdout), opts.thresholds)
    return [memory, *disks]


def check_backups(runner: Runner, opts: Options, now: datetime) -> list[Finding]:
    directory = shlex.quote(opts.backup_dir)
    listing = runner.run(f"find {directory} -mindepth 1 -maxdepth 2 -printf '%T@\\t%y\\t%s\\t%P\\n'")
    if listing.rc != 0 and not listing.stdout.strip():
        return [Finding("backup", PROBLEM, f"cannot list {opts.backup_dir}: {(listing.stderr.strip().splitlines() or ['?'])[-1]}")]
    sets, unfinished = parse_backup_listing(listing.stdout)
    complete = [s for s in sets if s.complete]
    manifest = None
    if complete:
        shown = runner.run(f"cat {shlex.quote(opts.backup_dir + '/' + complete[-1].name + '/manifest.txt')}")
        manifest = parse_manifest(shown.stdout) if shown.rc == 0 else None
    return evaluate_backups(sets, unfinished, manifest, now, opts.thresholds)


def check_app_dsn(runner: Runner, opts: Options) -> Finding:
    result = runner.run(render_script("show-dsn-hosts.sh", (opts.app_env_file, f"{opts.install_dir}/compose.yaml")))
    if result.rc != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.rc}"])[-1]
        return Finding("app DSN", PROBLEM, f"cannot read the app's SENTRY_DSN: {reason}")
    return evaluate_dsn(parse_dsn_hosts(result.stdout), opts.expected_dsn_target)


def check_glitchtip(client: GlitchTipClient) -> list[Finding]:
    if not client.health():
        return [Finding("glitchtip", PROBLEM, f"/_health/ does not answer 200 at {client.base_url}")]
    try:
        info = client.server_settings()
    except GlitchTipError as exc:
        return [Finding("glitchtip", WARN, f"healthy, but /api/settings/ failed: {exc}")]
    findings = [Finding("glitchtip", OK, f"healthy, version {info.get('version') or '?'}")]
    if info.get("enableUserRegistration"):
        findings.append(Finding("registration", PROBLEM, "sign-up is open to anyone who reaches GlitchTip (no user yet, or ENABLE_USER_REGISTRATION)"))
    try:
        problems = (client.request("GET", "/api/0/internal/health").body or {}).get("problems") or []
        if problems:
            findings.append(Finding("glitchtip internal", PROBLEM, "; ".join(map(str, problems))))
    except GlitchTipNotFound:
        pass
    except GlitchTipError as exc:
        findings.append(Finding("glitchtip internal", WARN, f"/api/0/internal/health failed: {exc}"))
    return findings


def check_monitors(api: Api, target: Target, opts: Options, now: datetime) -> list[Finding]:
    try:
        authenticate(api, target)
        org = resolve_org(api.client, target.org)
        monitors = api.client.monitors(org)
    except ToolError as exc:
        return [Finding("monitors", SKIP, str(exc))]
    except GlitchTipError as exc:
        return [Finding("monitors", PROBLEM, f"could not read the monitors: {exc}")]
    return evaluate_monitors(monitors, now, opts.heartbeat_name)


def collect(runner: Runner, api: Api, target: Target, opts: Options, *, now: datetime | None = None) -> list[Finding]:
    """Every check; a failing probe becomes a PROBLEM finding and the others still run."""
    now = now or datetime.now(timezone.utc)
    findings: list[Finding] = []
    probes = (
        lambda: check_glitchtip(api.client),
        lambda: check_containers(runner, opts),
        lambda: check_host(runner, opts),
        lambda: check_backups(runner, opts, now),
        lambda: check_monitors(api, target, opts, now),
        lambda: [check_app_dsn(runner, opts)],
    )
    for probe in probes:
        try:
            findings.extend(probe())
        except RemoteFailed as exc:
            findings.append(Finding(exc.check, PROBLEM, str(exc)))
        except ValueError as exc:  # output that does not parse
            findings.append(Finding("probe", PROBLEM, f"unreadable output: {exc}"))
    return findings


# ------------------------------------------------------------------------------ report
def summary(findings: Iterable[Finding]) -> tuple[int, int]:
    findings = list(findings)
    return sum(f.level == PROBLEM for f in findings), sum(f.level == WARN for f in findings)


def render(findings: list[Finding]) -> str:
    problems, warnings = summary(findings)
    table = format_table(["CHECK", "STATUS", "DETAIL"], [[f.check, f.level, f.detail] for f in findings])
    if problems:
        names = ", ".join(f.check for f in findings if f.level == PROBLEM)
        verdict = f"{problems} problem(s), {warnings} warning(s): {names}"
    else:
        verdict = f"OK ({len(findings)} checks, {warnings} warning(s))"
    return f"{table}\n\nstatus: {verdict}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="status.py",
        description="GlitchTip's health and version, containers and their memory, host RAM and disks, backup age, "
        "heartbeat and uptime monitors, and the app's DSN target; exits 1 on any problem (for cron).",
        epilog="Exit status: 0 no problem, 1 a problem (listed last), 2 cannot run.",
    )
    add_connection_args(parser)
    server = parser.add_argument_group("on the server (default: the stack's config, else Pulumi.yaml's defaults)")
    server.add_argument("--install-dir", help="GlitchTip's directory (config installDir)")
    server.add_argument("--backup-dir", help="backup sets (config backupDir)")
    server.add_argument("--app-env-file", help="the app's .env (config appEnvFile)")
    server.add_argument("--compose-project", default="glitchtip", help="compose project name (default glitchtip)")
    server.add_argument("--services", help="comma-separated services that must have a container "
                        "(default: from the stack's serverMode, valkey and exposure)")
    server.add_argument("--expect-dsn-target", choices=("glitchtip", "sentry", "dual"), help="where the app's DSN must point (default: the stack's dsnTarget)")
    server.add_argument("--heartbeat", help="name of the heartbeat monitor to check (default: every Heartbeat monitor)")
    limits = parser.add_argument_group("thresholds")
    limits.add_argument("--max-container-memory", type=float, default=90.0, help="percent of a container's limit (default 90)")
    limits.add_argument("--max-host-memory", type=float, default=90.0, help="percent of host RAM in use, by `available` (default 90)")
    limits.add_argument("--max-disk", type=float, default=85.0, help="percent used per filesystem (default 85)")
    limits.add_argument("--min-disk-free-mb", type=float, default=2048.0, help="free MiB per filesystem (default 2048)")
    limits.add_argument("--max-backup-age-hours", type=float, default=26.0, help="age of the newest complete backup set (default 26)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    out.add_argument("--quiet", action="store_true", help="print only problems and warnings (for cron mail)")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace, target: Target) -> Options:
    services: tuple[str, ...] | None = None
    if args.services:
        services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    elif target.stack.config("serverMode", default=False):
        # Not the dual relay: it is a compose project of its own (glitchtip-relay, components/relay.py).
        services = tuple(services_for(str(target.config("serverMode")), _bool(target.config("valkey")), str(target.config("exposure"))))
    return Options(
        compose_project=args.compose_project,
        install_dir=args.install_dir or str(target.config("installDir")),
        backup_dir=args.backup_dir or str(target.config("backupDir")),
        app_env_file=args.app_env_file or str(target.config("appEnvFile")),
        expected_services=services,
        expected_dsn_target=args.expect_dsn_target or target.stack.config("dsnTarget", default=False),
        heartbeat_name=args.heartbeat,
        thresholds=Thresholds(
            container_memory_percent=args.max_container_memory,
            host_memory_percent=args.max_host_memory,
            disk_percent=args.max_disk,
            disk_free_bytes=int(args.min_disk_free_mb * 1024 * 1024),
            backup_age_hours=args.max_backup_age_hours,
        ),
    )


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def report(findings: list[Finding], args: argparse.Namespace) -> int:
    problems, warnings = summary(findings)
    if args.json:
        print(json.dumps({"ok": problems == 0, "problems": problems, "warnings": warnings,
                          "checkedAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "checks": [asdict(f) for f in findings]}, indent=2))
    else:
        shown = [f for f in findings if f.level in (PROBLEM, WARN)] if args.quiet else findings
        if shown:
            print(render(shown))
    return EXIT_PROBLEM if problems else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = load_target(args)
    if target.ssh is None:
        raise ToolError("status needs SSH to the server: pass --ssh-host, --ssh-host-key and --ssh-key-file (or run it inside the project).")
    opts = options_from(args, target)
    with ssh_runner(target.ssh) as runner, glitchtip_api(target) as api:
        findings = collect(runner, api, target, opts)
    return report(findings, args)


if __name__ == "__main__":
    sys.exit(run_main(TOOL, main))
