"""The stack's configuration, loaded and validated once, before any resource exists.

Every key is declared in Pulumi.yaml with its default; this module reads those
defaults from Pulumi.yaml itself (the Pulumi engine applies them under `pulumi up`,
the unit tests' mocks do not), so the two can never disagree. Each bad value stops
the program with one sentence naming the key and the fix (`ConfigError`, a
`pulumi.RunError`: the CLI prints the sentence without a stack trace).
Secret values are validated in plain text here and leave this module only as
secret Outputs.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pulumi
import yaml
from pulumi.runtime.config import is_config_secret

PROJECT = "glitchtip-migration"
PROJECT_FILE = Path(__file__).resolve().parent.parent / "Pulumi.yaml"

DSN_TARGETS = ("sentry", "glitchtip", "dual")
EXPOSURES = ("tunnel", "tls")
SERVER_MODES = ("all-in-one", "split")
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)

# Memory floor per service in MiB: below these GlitchTip or Postgres are OOM-killed
# under a burst (glitchtip-facts.md: all-in-one settles at 290-320 MB, peaks ~490 MB).
MEMORY_FLOOR_MB = {
    "glitchtip": 512,  # all-in-one: web + worker + scheduler
    "web": 384,
    "worker": 256,
    "migrate": 256,
    "postgres": 192,
    "valkey": 64,
    "caddy": 64,
    # nginx mirroring envelopes during the parallel run (dsnTarget=dual): 8 MB + 5-12 MB per worker.
    # Always kept out of the stack's share (Settings.load), so a dsnTarget flip never changes the
    # stack's limits, and so never recreates GlitchTip's containers mid-cutover.
    "relay": 32,
}


class ConfigError(pulumi.RunError):
    """A configuration value is wrong; the message is one sentence naming the key and the fix."""


@cache
def project_defaults() -> dict[str, Any]:
    """Defaults declared in Pulumi.yaml's config block (keys without one are required)."""
    declared = yaml.safe_load(PROJECT_FILE.read_text())["config"]
    return {key: spec["default"] for key, spec in declared.items() if "default" in spec}


def declared_keys() -> list[str]:
    """Every config key Pulumi.yaml declares, in its order."""
    return list(yaml.safe_load(PROJECT_FILE.read_text())["config"])


def services_for(mode: str, valkey: bool, exposure: str, relay: bool = False) -> list[str]:
    """The compose services a configuration runs, in start order (relay: dsnTarget is dual)."""
    services = ["postgres"]
    if valkey:
        services.append("valkey")
    services += ["glitchtip"] if mode == "all-in-one" else ["migrate", "web", "worker"]
    if exposure == "tls":
        services.append("caddy")
    if relay:
        services.append("relay")
    return services


def memory_plan(mode: str, valkey: bool, exposure: str, budget_mb: int, relay: bool = False) -> dict[str, int]:
    """Split the memory budget into per-service limits (MiB) whose sum is <= budget_mb.

    Small helpers (Valkey, Caddy, the dual relay) get their floor; the rest of the budget goes to
    GlitchTip and Postgres in proportion to their floors, rounded down to 16 MiB.
    """
    services = services_for(mode, valkey, exposure, relay)
    plan = {s: MEMORY_FLOOR_MB[s] for s in services}
    growable = [s for s in services if s not in ("valkey", "caddy", "relay")]
    spare = budget_mb - sum(plan.values())
    weight = sum(MEMORY_FLOOR_MB[s] for s in growable)
    for service in growable:
        extra = spare * MEMORY_FLOOR_MB[service] // weight
        plan[service] += extra - extra % 16
    return plan


def postgres_major(image: str) -> int | None:
    """The major version a Postgres image reference's tag starts with (postgres:18.1@sha256:... -> 18)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    match = re.match(r"(\d+)", tag)
    return int(match.group(1)) if match else None


def _fail(key: str, problem: str) -> ConfigError:
    return ConfigError(f"Config key '{key}' {problem}")


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}$")
_IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[a-f0-9]{64}$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_PM2_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UNUSABLE_EMAIL_TLDS = (".local", ".test", ".localhost", ".invalid", ".example")


def check_host(key: str, value: str) -> str:
    if not is_ip(value) and not _HOSTNAME.match(value):
        raise _fail(key, "must be an IP address or a DNS name; set it with `pulumi config set host 203.0.113.10`.")
    return value


def check_port(key: str, value: Any) -> int:
    port = _integer(key, value)
    if not 1 <= port <= 65535:
        raise _fail(key, "must be a port between 1 and 65535.")
    return port


def check_host_key(key: str, value: str) -> str:
    """An authorized_keys-format public key whose blob really is of the named type."""
    hint = "must be the server's public host key in authorized_keys format; get it with `ssh-keyscan -t ed25519 HOST` and set the 'ssh-ed25519 AAAA...' part."
    parts = value.strip().split()
    if len(parts) < 2 or parts[0] not in HOST_KEY_TYPES:
        raise _fail(key, hint)
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise _fail(key, hint) from None
    if embedded != parts[0]:
        raise _fail(key, hint)
    return f"{parts[0]} {parts[1]}"


def check_dsn(key: str, value: str) -> str:
    """A Sentry-style DSN: scheme://<public key>@host[:port]/<numeric project id>. Never echoed."""
    hint = f"must be a DSN like https://<public key>@<host>/<project id>; copy it from the project's Client Keys (DSN) page and set it with `pulumi config set --secret {key} ...`."
    try:
        parts = urlsplit(value.strip())
        port_ok = parts.port is None or 1 <= parts.port <= 65535
    except ValueError:
        raise _fail(key, hint) from None
    project_id = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if (
        parts.scheme not in ("http", "https")
        or not parts.username
        or not re.fullmatch(r"[A-Za-z0-9]{16,64}", parts.username)
        or not parts.hostname
        or not port_ok
        or not project_id.isdigit()
        or parts.query
        or parts.fragment
    ):
        raise _fail(key, hint)
    return value.strip()


def check_subnet(key: str, value: str) -> str:
    """A private IPv4 subnet for the proxy's compose network, /16 to /28 (Caddy takes its second address)."""
    try:
        net = ipaddress.IPv4Network(value.strip())
    except ValueError:
        raise _fail(key, "must be a private IPv4 subnet such as 172.30.86.0/24 (network address, then /16 to /28).") from None
    if not net.is_private or net.is_loopback or net.is_link_local or not 16 <= net.prefixlen <= 28:
        raise _fail(key, "must be a private IPv4 subnet such as 172.30.86.0/24 (network address, then /16 to /28).")
    return str(net)


def check_cron(key: str, value: str) -> str:
    """A five-field cron schedule valid in /etc/cron.d (no '%', which cron turns into newlines)."""
    hint = "must be a five-field cron schedule such as '0 2 * * *' (minute hour day month weekday)"
    if "%" in value:
        raise _fail(key, f"{hint}, without '%', which cron treats as a newline.")
    fields = value.split()
    if len(fields) != 5:
        raise _fail(key, f"{hint}.")
    limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    names = [
        {},
        {},
        {},
        {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
        {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
    ]
    for field, (low, high), aliases in zip(fields, limits, names):
        for item in field.split(","):
            base, _, step = item.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                raise _fail(key, f"{hint}; '{item}' has a bad step.")
            if base == "*":
                continue
            bounds = base.split("-")
            if len(bounds) > 2:
                raise _fail(key, f"{hint}; '{item}' is not a valid range.")
            numbers = []
            for bound in bounds:
                number = aliases.get(bound.lower(), bound)
                if not str(number).isdigit() or not low <= int(number) <= high:
                    raise _fail(key, f"{hint}; '{item}' is out of range {low}-{high}.")
                numbers.append(int(number))
            if len(numbers) == 2 and numbers[0] > numbers[1]:
                raise _fail(key, f"{hint}; '{item}' is a reversed range.")
    return " ".join(fields)


def cron_hours(schedule: str) -> set[int] | None:
    """The hours a valid schedule fires in, or None for every hour ('*')."""
    field = schedule.split()[1]
    hours: set[int] = set()
    for item in field.split(","):
        base, _, step = item.partition("/")
        low, high = (0, 23) if base == "*" else (int(base.split("-")[0]), int(base.split("-")[-1]))
        if base != "*" and "-" not in base and step:
            high = 23
        hours.update(range(low, high + 1, int(step or 1)))
    return None if hours == set(range(24)) else hours


def _integer(key: str, value: Any) -> int:
    try:
        number = float(value)  # the engine hands numbers over as floats or strings
    except (TypeError, ValueError):
        raise _fail(key, "must be a whole number.") from None
    if number != int(number):
        raise _fail(key, "must be a whole number.")
    return int(number)


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise _fail(key, "must be true or false.")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(key, f"must be one of {', '.join(choices)}; set it with `pulumi config set {key} {choices[0]}`.")
    return value


def _path(key: str, value: str) -> str:
    if not _SAFE_PATH.match(value) or "/../" in f"{value}/":
        raise _fail(key, "must be an absolute path of letters, digits and . _ / + - only.")
    return value.rstrip("/") or "/"


def _image(key: str, value: str) -> str:
    if value and not _IMAGE_REF.match(value):
        raise _fail(key, "must be a full image reference pinned by digest (name:tag@sha256:<64 hex>), or empty to resolve it.")
    return value


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Secrets are secret Outputs; everything else is plain."""

    host: str
    ssh_user: str
    ssh_port: int
    ssh_host_key: str
    ssh_private_key: pulumi.Output[str]
    app_env_file: str
    app_pm2_apps: tuple[str, ...]
    app_restart_command: str
    sentry_dsn: pulumi.Output[str]
    dsn_target: str
    relay_port: int
    relay_image: str
    glitchtip_dsn: pulumi.Output[str] | None
    glitchtip_version: str
    glitchtip_image: str
    postgres_image: str
    valkey_image: str
    server_mode: str
    valkey: bool
    glitchtip_port: int
    exposure: str
    domain: str
    caddy_image: str
    acme_email: str
    tls_internal: bool
    proxy_subnet: str
    firewall: bool
    memory_budget_mb: int
    memory_limits_mb: dict[str, int]
    retention_days: int
    admin_email: str
    smtp_url: pulumi.Output[str] | None
    install_dir: str
    docker_version: str
    uninstall_docker_on_destroy: bool
    delete_data_on_destroy: bool
    backup_dir: str
    backup_schedule: str
    backup_retention_days: int
    backup_offsite_command: pulumi.Output[str] | None
    from_email: str
    adopt_postgres_password: bool
    organization_name: str
    team_slug: str
    project_name: str
    project_platform: str
    alerts: tuple[AlertRule, ...]
    alert_webhook_url: str
    uptime_monitors: tuple[tuple[str, str], ...]

    @property
    def glitchtip_url(self) -> str:
        """GlitchTip's address as the server itself reaches it."""
        return f"http://127.0.0.1:{self.glitchtip_port}"

    @property
    def public_url(self) -> str:
        """GLITCHTIP_DOMAIN: the public TLS URL with exposure=tls, else the loopback URL."""
        return f"https://{self.domain}" if self.exposure == "tls" else self.glitchtip_url

    @classmethod
    def load(cls, config: pulumi.Config | None = None) -> Settings:
        """Read and validate every key; raise ConfigError on the first bad one."""
        config = config or pulumi.Config(PROJECT)
        defaults = project_defaults()

        def raw(key: str) -> Any:
            try:
                value = config.get_object(key) if isinstance(defaults.get(key), list) else config.get(key)
            except pulumi.ConfigTypeError:
                raise _fail(key, f"must be a list of strings, e.g. `pulumi config set --path '{key}[0]' ...`.") from None
            return defaults.get(key) if value is None else value

        def required(key: str, how: str) -> str:
            value = raw(key)
            if value is None or str(value).strip() == "":
                raise _fail(key, f"is required; set it with `{how}`.")
            return str(value).strip()

        def secret(key: str, value: str) -> pulumi.Output[str]:
            if value and not is_config_secret(f"{PROJECT}:{key}"):
                raise _fail(key, f"must be stored encrypted; set it again with `pulumi config set --secret {key} ...`.")
            return pulumi.Output.secret(value)

        host = check_host("host", required("host", "pulumi config set host 203.0.113.10"))
        ssh_user = str(raw("sshUser"))
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", ssh_user):
            raise _fail("sshUser", "must be a Unix user name such as root.")
        host_key = check_host_key(
            "sshHostKey", required("sshHostKey", 'pulumi config set sshHostKey "$(ssh-keyscan -t ed25519 HOST | cut -d\' \' -f2-)"')
        )

        key_text, key_path = str(raw("sshPrivateKey") or ""), str(raw("sshPrivateKeyPath") or "")
        if key_text and key_path:
            raise _fail("sshPrivateKeyPath", "must be empty when sshPrivateKey is set; keep only one of the two.")
        if key_path:
            path = Path(os.path.expanduser(key_path))
            try:
                key_text = path.read_text()
            except OSError:
                raise _fail("sshPrivateKeyPath", "must name a readable private key file on this machine.") from None
        elif key_text:
            secret("sshPrivateKey", key_text)
        else:
            raise _fail("sshPrivateKey", "is required (or sshPrivateKeyPath); set it with `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`.")
        if "PRIVATE KEY-----" not in key_text:
            raise _fail("sshPrivateKeyPath" if key_path else "sshPrivateKey", "must hold a PEM or OpenSSH private key (-----BEGIN ... PRIVATE KEY-----).")

        apps = raw("appPm2Apps") or []
        if not isinstance(apps, list) or not all(isinstance(a, str) and _PM2_NAME.match(a) for a in apps):
            raise _fail("appPm2Apps", "must be a list of PM2 process names, e.g. `pulumi config set --path 'appPm2Apps[0]' ai-admin-api`.")
        restart = str(raw("appRestartCommand") or "")
        if "\n" in restart:
            raise _fail("appRestartCommand", "must be a single line.")

        sentry_dsn = check_dsn("sentryDsn", required("sentryDsn", "pulumi config set --secret sentryDsn https://KEY@oNNN.ingest.sentry.io/PROJECT"))
        glitchtip_dsn_text = str(raw("glitchtipDsn") or "")
        if glitchtip_dsn_text:
            check_dsn("glitchtipDsn", glitchtip_dsn_text)

        version = str(raw("glitchtipVersion"))
        match = _VERSION.match(version)
        if not match or int(match.group(1)) < 6:
            raise _fail("glitchtipVersion", "must be an exact GlitchTip release of 6.0.0 or newer, such as 6.2.6 (5.x still needs Celery).")

        mode = _choice("serverMode", str(raw("serverMode")), SERVER_MODES)
        valkey = _boolean("valkey", raw("valkey"))
        exposure = _choice("exposure", str(raw("exposure")), EXPOSURES)
        domain = str(raw("domain") or "")
        if exposure == "tls":
            if not domain:
                raise _fail("domain", "is required when exposure is tls; set it with `pulumi config set domain glitchtip.example.com`.")
            if "." not in domain or not _HOSTNAME.match(domain) or is_ip(domain):
                raise _fail("domain", "must be a DNS name (not an IP) that resolves to the server, such as glitchtip.example.com.")

        dsn_target = _choice("dsnTarget", str(raw("dsnTarget")), DSN_TARGETS)
        glitchtip_port = check_port("glitchtipPort", raw("glitchtipPort"))
        relay_port = check_port("relayPort", raw("relayPort"))
        if relay_port == glitchtip_port:
            raise _fail("relayPort", f"must differ from glitchtipPort ({glitchtip_port}); set it with `pulumi config set relayPort 9010`.")
        budget = _integer("memoryBudgetMb", raw("memoryBudgetMb"))
        # The relay's share is reserved whatever dsnTarget is (MEMORY_FLOOR_MB): relay=True here and below.
        floor = sum(MEMORY_FLOOR_MB[s] for s in services_for(mode, valkey, exposure, relay=True))
        if budget < floor:
            raise _fail("memoryBudgetMb", f"must be at least {floor} for this stack ({mode}{', valkey' if valkey else ''}{', tls' if exposure == 'tls' else ''}, {MEMORY_FLOOR_MB['relay']} MB kept for the parallel run's relay); raise it or choose a smaller stack.")

        retention = _integer("retentionDays", raw("retentionDays"))
        if not 1 <= retention <= 3650:
            raise _fail("retentionDays", "must be between 1 and 3650 days.")
        backup_retention = _integer("backupRetentionDays", raw("backupRetentionDays"))
        if not 1 <= backup_retention <= 3650:
            raise _fail("backupRetentionDays", "must be between 1 and 3650 days.")
        offsite = str(raw("backupOffsiteCommand") or "").strip()
        if len(offsite) > 2000 or re.search(r"[\n\r\x00]", offsite):
            raise _fail("backupOffsiteCommand", "must be a single line of at most 2000 characters, such as rclone copy \"$1\" offsite:glitchtip/.")
        install_dir = _path("installDir", str(raw("installDir")))
        backup_dir = _path("backupDir", str(raw("backupDir")))
        if backup_dir in ("/", install_dir):
            raise _fail("backupDir", "must be a directory of its own, such as /var/backups/glitchtip (not / and not installDir).")

        email = required("adminEmail", "pulumi config set adminEmail you@example.com")
        if not _EMAIL.match(email) or email.lower().endswith(_UNUSABLE_EMAIL_TLDS):
            raise _fail("adminEmail", "must be a deliverable email address such as admin@example.com (GlitchTip rejects .local, .test, .localhost and .invalid).")

        smtp_url = str(raw("smtpUrl") or "")
        if smtp_url and urlsplit(smtp_url).scheme not in ("smtp", "smtp+tls", "smtp+ssl", "consolemail"):
            raise _fail("smtpUrl", "must be an EMAIL_URL such as smtp+tls://user:password@smtp.example.com:587.")
        if re.search(r"[\s'\\$\x00]", smtp_url):  # it goes single-quoted into the server's .env
            raise _fail("smtpUrl", "must not contain spaces, quotes, backslashes or $; percent-encode them (' is %27, $ is %24, a space %20).")

        acme_email = str(raw("acmeEmail") or "") or email
        if not _EMAIL.match(acme_email):
            raise _fail("acmeEmail", "must be an email address such as admin@example.com, or empty to use adminEmail.")

        from_email = str(raw("fromEmail") or "") or email
        if not _EMAIL.match(from_email):
            raise _fail("fromEmail", "must be an email address such as glitchtip@example.com, or empty to use adminEmail.")

        postgres_image = _image("postgresImage", str(raw("postgresImage") or ""))
        if postgres_image and not 14 <= (postgres_major(postgres_image) or 0) <= 99:
            raise _fail("postgresImage", "must carry a tag that starts with its major version, 14 or newer (postgres:18.1@sha256:...): the data directory's layout depends on it.")

        docker_version = str(raw("dockerVersion"))
        if not _VERSION.match(docker_version):
            raise _fail("dockerVersion", "must be a Docker Engine release such as 28.5.2.")

        return cls(
            host=host,
            ssh_user=ssh_user,
            ssh_port=check_port("sshPort", raw("sshPort")),
            ssh_host_key=host_key,
            ssh_private_key=pulumi.Output.secret(key_text),
            app_env_file=_path("appEnvFile", str(raw("appEnvFile"))),
            app_pm2_apps=tuple(apps),
            app_restart_command=restart,
            sentry_dsn=secret("sentryDsn", sentry_dsn),
            dsn_target=dsn_target,
            relay_port=relay_port,
            relay_image=_image("relayImage", str(raw("relayImage") or "")),
            glitchtip_dsn=secret("glitchtipDsn", glitchtip_dsn_text) if glitchtip_dsn_text else None,
            glitchtip_version=version,
            glitchtip_image=_image("glitchtipImage", str(raw("glitchtipImage") or "")),
            postgres_image=postgres_image,
            valkey_image=_image("valkeyImage", str(raw("valkeyImage") or "")),
            server_mode=mode,
            valkey=valkey,
            glitchtip_port=glitchtip_port,
            exposure=exposure,
            domain=domain,
            caddy_image=_image("caddyImage", str(raw("caddyImage") or "")),
            acme_email=acme_email,
            tls_internal=_boolean("tlsInternal", raw("tlsInternal")),
            proxy_subnet=check_subnet("proxySubnet", str(raw("proxySubnet"))),
            firewall=_boolean("firewall", raw("firewall")),
            memory_budget_mb=budget,
            memory_limits_mb=memory_plan(mode, valkey, exposure, budget, relay=True),
            retention_days=retention,
            admin_email=email,
            smtp_url=secret("smtpUrl", smtp_url) if smtp_url else None,
            install_dir=install_dir,
            docker_version=docker_version,
            uninstall_docker_on_destroy=_boolean("uninstallDockerOnDestroy", raw("uninstallDockerOnDestroy")),
            delete_data_on_destroy=_boolean("deleteDataOnDestroy", raw("deleteDataOnDestroy")),
            backup_dir=backup_dir,
            backup_schedule=check_cron("backupSchedule", str(raw("backupSchedule"))),
            backup_retention_days=backup_retention,
            backup_offsite_command=pulumi.Output.secret(offsite) if offsite else None,
            from_email=from_email,
            adopt_postgres_password=_boolean("adoptPostgresPassword", raw("adoptPostgresPassword")),
            organization_name=_name("organizationName", str(raw("organizationName"))),
            team_slug=_slug("teamSlug", str(raw("teamSlug"))),
            project_name=_name("projectName", str(raw("projectName"))),
            project_platform=_slug("projectPlatform", str(raw("projectPlatform"))),
            alerts=tuple(check_alert("alerts", a) for a in _strings("alerts", raw("alerts"))),
            alert_webhook_url=_url("alertWebhookUrl", str(raw("alertWebhookUrl") or "")),
            uptime_monitors=tuple(check_monitor("uptimeMonitors", m) for m in _strings("uptimeMonitors", raw("uptimeMonitors"))),
        )


@dataclass(frozen=True)
class AlertRule:
    """An alert: more than `quantity` events within `minutes` (1 in 1 = every new issue)."""

    name: str
    quantity: int
    minutes: int


_ALERT_COUNT = re.compile(r"^(?P<name>[^:]{1,100}):\s*(?P<n>\d+) events? in (?P<m>\d+) minutes?$")
_ALERT_NEW = re.compile(r"^(?P<name>[^:]{1,100}):\s*new issues?$")


def check_alert(key: str, value: str) -> AlertRule:
    """'NAME: N events in M minutes' or 'NAME: new issue'."""
    text = " ".join(value.split())
    if match := _ALERT_NEW.match(text):
        return AlertRule(match["name"].strip(), 1, 1)
    match = _ALERT_COUNT.match(text)
    if not match or int(match["n"]) < 1 or not 1 <= int(match["m"]) <= 10080:
        raise _fail(key, "entries must read 'NAME: N events in M minutes' (M up to 10080) or 'NAME: new issue'.")
    return AlertRule(match["name"].strip(), int(match["n"]), int(match["m"]))


def check_monitor(key: str, value: str) -> tuple[str, str]:
    """'NAME=URL' with an http(s) URL."""
    name, _, url = value.partition("=")
    if not name.strip() or not re.fullmatch(r"https?://[^\s]+", url.strip()):
        raise _fail(key, "entries must read 'NAME=https://app.example.com/health'.")
    return name.strip(), url.strip()


def _strings(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(key, f"must be a list of strings, e.g. `pulumi config set --path '{key}[0]' ...`.")
    return value


def _name(key: str, value: str) -> str:
    if not 1 <= len(value.strip()) <= 64 or "\n" in value:
        raise _fail(key, "must be a name of 1 to 64 characters.")
    return value.strip()


def _slug(key: str, value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,49}", value):
        raise _fail(key, "must be 1-50 lowercase letters, digits, '-' or '_'.")
    return value


def _url(key: str, value: str) -> str:
    if value and not re.fullmatch(r"https?://[^\s]+", value):
        raise _fail(key, "must be an http(s) URL or empty.")
    return value


def is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address (not a host name)."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False
