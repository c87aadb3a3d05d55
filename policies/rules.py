"""The guardrails of the GlitchTip migration, as pulumi-policy rules.

Importable on its own (policies/__main__.py only builds the pack from POLICIES, because
constructing a PolicyPack starts a server and never returns: pulumi-traps 22), and
independent of `components` (the pack runs in its own environment).

What the rules read: the custom resources the program registers.
- Every remote step is a `command:remote:Command` whose create/update/delete is a string
  rendered by components/remote.py: a `# glitchtip-migration: <script> ...` header, then
  `bash -c '<lib.sh + script>' <script> <args...>` (read back by commandline.py). Secrets
  travel on `stdin` as KEY=value lines (files base64-encoded as KEY_B64=...).
- deploy-stack.sh carries compose.yaml as its LAST argument (older renders carried it on
  stdin as COMPOSE_B64=...: read there when the argument is absent); `.env` (the secrets)
  travels on stdin as ENV_B64=...
- install-backup.sh carries backup.conf (RETENTION_DAYS=...) and the cron.d entry as its 5th
  and 6th arguments (only the heartbeat URL and the off-site command travel on stdin, which is
  unknown at preview once the URL comes from a monitor); set-dsn.sh points the app at a DSN;
  install-docker.sh VERSION.

Policies see secret values in plain text and print their messages (pulumi-traps 23): no
message here ever contains a property value. Service names are shown only when they are
one of the service names the design uses.

Preview (pulumi-traps 24): a value that is unknown in preview raises UnknownValueError
when read through the SDK's proxy, which silently turns the rule into an advisory. These
rules read the raw values instead (`plain`) and decide explicitly:
- a value that config alone determines (host key, logging, compose.yaml) must be known at
  preview: if it is not, that is a violation saying so;
- a value that is truly unknowable before `up` (a command string built from another
  resource's output, `.env` before its random secrets exist) is skipped, and the rule
  ends by raising `Unknowable` naming what it skipped and why, after every known value was
  checked and reported: the engine shows it as an advisory "can't run during preview" note.
- a secret source that is unknown (a password not generated yet) needs no check: a known
  command string cannot contain a value that does not exist yet.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

try:  # imported as policies.rules (tests)
    from .commandline import Rendered, read_command
except ImportError:  # run by pulumi: policies/ itself is on sys.path
    from commandline import Rendered, read_command  # type: ignore[no-redef]

PACK_NAME = "glitchtip-migration-guardrails"

COMMAND_TYPES = ("command:remote:Command", "command:local:Command")
RANDOM_SECRETS = {
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
    "random:index/randomBytes:RandomBytes": ("hex", "base64"),
}
DEPLOY_SCRIPT = "deploy-stack.sh"
BACKUP_SCRIPT = "install-backup.sh"
DOCKER_SCRIPT = "install-docker.sh"
DSN_SCRIPT = "set-dsn.sh"
RELAY_SCRIPT = "install-relay.sh"
"""dsnTarget=dual: the relay's own compose project; its compose.yaml is the last argument too."""
COMPOSE_SCRIPTS = (DEPLOY_SCRIPT, RELAY_SCRIPT)

KNOWN_SERVICES = frozenset({"postgres", "valkey", "glitchtip", "migrate", "web", "worker", "caddy", "relay"})
"""The design's compose services: only these names ever appear in a message."""
GLITCHTIP_SERVICES = frozenset({"glitchtip", "migrate", "web", "worker"})
REGISTRATION_FLAGS = ("ENABLE_USER_REGISTRATION", "ENABLE_ORGANIZATION_CREATION")

DEFAULTS: dict[str, Any] = {
    "memoryBudgetMb": 1024,
    "minRetentionDays": 7,
    "maintenanceHour": 5,
    "proxyService": "caddy",
    "proxyPorts": [80, 443],
    "minSecretLength": 8,
}
"""Thresholds: the pack config's defaults (the engine applies them; direct callers get them here)."""
BUDGET_EXTENSION = "x-memory-budget-mb"
"""A compose top-level extension field; when the program writes its own budget there, it wins."""


# ---------------------------------------------------------------------------- raw values


class _UnknownType:
    """A value that is not known during preview."""

    _instance: _UnknownType | None = None

    def __new__(cls) -> _UnknownType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:  # never mistaken for an empty (absent) value
        return True


UNKNOWN = _UnknownType()
_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)


def plain(value: Any) -> Any:
    """The value without the SDK's unknown-checking proxies; unknown values become UNKNOWN.

    Reading through the proxies raises UnknownValueError on the first unknown value,
    which would end the rule as an advisory (pulumi-traps 24); here each rule decides.
    """
    if type(value).__name__ in ("_DictProxy", "_ListProxy", "_DictSecretsProxy", "_ListSecretsProxy"):
        value = value["__target"]
    if type(value).__name__ == "Secret" and hasattr(value, "value"):
        value = value.value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, str) and value in _SENTINELS:
        return UNKNOWN
    return value


class Unknowable(UnknownValueError):
    """Raised last by a rule that skipped values nobody can know before `pulumi up`.

    The engine reports it as an advisory "can't run policy ... during preview: <reasons>";
    every known value was checked (and its violations reported) before it is raised.
    """

    def __init__(self, reasons: Iterable[str]) -> None:
        super().__init__(UNKNOWN_STRING_VALUE, [])
        self.reasons = list(reasons)
        self.message = "; ".join(self.reasons)


class Skips:
    """The values a rule could not check in preview, with the reason for each."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def add(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def finish(self) -> None:
        if self.reasons:
            raise Unknowable(self.reasons)


@dataclass
class Res:
    """A resource as the rules see it: plain props, dependencies as URNs."""

    urn: str
    type: str
    name: str
    props: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    parent: str | None = None

    @property
    def label(self) -> str:
        """The resource's name, for skip reasons (a name, never a property value)."""
        return self.name


def _urn_of(value: Any) -> str:
    return value if isinstance(value, str) else getattr(value, "urn", "")


def stack_resources(args: StackValidationArgs) -> list[Res]:
    """The stack's resources with plain props."""
    resources = []
    for resource in args.resources:
        parent = getattr(resource, "parent", None)
        dependencies = list(getattr(resource, "dependencies", None) or [])
        for deps in (getattr(resource, "property_dependencies", None) or {}).values():
            dependencies.extend(deps)
        resources.append(
            Res(
                urn=resource.urn,
                type=resource.resource_type,
                name=resource.name,
                props=plain(resource.props),
                dependencies=list(dict.fromkeys(_urn_of(d) for d in dependencies)),
                parent=_urn_of(parent) if parent is not None else None,
            )
        )
    return resources


def config_value(args: Any, key: str) -> Any:
    """A pack config value (the engine sends numbers as floats), or its default."""
    value = (args.get_config() or {}).get(key)
    if value is None:
        return DEFAULTS[key]
    if isinstance(DEFAULTS[key], int) and not isinstance(value, bool):
        return int(value)
    if isinstance(DEFAULTS[key], list):
        return [int(v) if isinstance(v, float) else v for v in value]
    return value


# ---------------------------------------------------------------------------- commands


def step_of(props: Mapping[str, Any]) -> Rendered | _UnknownType | None:
    """The script a command runs (from `create`), UNKNOWN when create is unknown, None if not rendered."""
    create = props.get("create")
    if create is UNKNOWN:
        return UNKNOWN
    if not isinstance(create, str):
        return None
    try:
        return read_command(create)
    except ValueError:
        return None


_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def stdin_lines(stdin: str) -> dict[str, str]:
    """The KEY=value lines of a step's stdin."""
    values = {}
    for line in stdin.splitlines():
        match = _LINE.match(line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def decode_b64(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def stdin_payload(stdin: Any, *keys: str) -> str | _UnknownType | None:
    """A base64 file from stdin (the first of KEYS present), decoded; UNKNOWN when stdin is unknown."""
    if stdin is UNKNOWN:
        return UNKNOWN
    if not isinstance(stdin, str):
        return None
    lines = stdin_lines(stdin)
    for key in keys:
        if key in lines:
            return decode_b64(lines[key])
    return None


_DOTENV = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=value lines of an env file, outer quotes removed (the subset the program writes)."""
    values = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _DOTENV.match(line)
        if not match:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def is_env_file(text: str) -> bool:
    """Whether every line of TEXT is blank, a comment or a KEY=value assignment (an env file,
    not a script, compose file or cron entry that happens to travel on stdin too)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return bool(lines) and all(_LINE.match(line) for line in lines)


# ---------------------------------------------------------------------------- compose


@dataclass
class Compose:
    """A deploy step's compose.yaml, and its `.env` (secrets) as far as it is known."""

    document: dict[str, Any]
    env: dict[str, str] | _UnknownType | None

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        services = self.document.get("services") or {}
        return {name: (svc if isinstance(svc, dict) else {}) for name, svc in services.items()}


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_document(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or "services" not in text:
        return None
    return _parse_compose(text)


@lru_cache(maxsize=64)  # every compose rule reads the same file; the result is only ever read
def _parse_compose(text: str) -> dict[str, Any] | None:
    try:
        document = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    except yaml.YAMLError:
        return None
    if isinstance(document, dict) and isinstance(document.get("services"), dict):
        return document
    return None


NOT_A_DEPLOY = object()
CREATE_UNKNOWN = object()
COMPOSE_UNKNOWN = object()
COMPOSE_INVALID = object()


def compose_of(props: Mapping[str, Any]) -> Any:
    """The Compose of a deploy step, or one of NOT_A_DEPLOY, CREATE_UNKNOWN, COMPOSE_UNKNOWN, COMPOSE_INVALID.

    compose.yaml is deploy-stack.sh's (or, for the dual relay's own project,
    install-relay.sh's) last argument; when it is not there, stdin's COMPOSE_B64 line
    (older renders). An unknown stdin then means "cannot check".
    """
    step = step_of(props)
    if step is UNKNOWN:
        return CREATE_UNKNOWN
    if step is None or step.script not in COMPOSE_SCRIPTS:
        return NOT_A_DEPLOY
    stdin = props.get("stdin")
    document = _compose_document(step.args[-1]) if step.args else None
    if document is None:
        payload = stdin_payload(stdin, "COMPOSE_B64", "COMPOSE_YAML_B64")
        if payload is UNKNOWN:
            return COMPOSE_UNKNOWN
        document = _compose_document(payload)
    if document is None:
        return COMPOSE_INVALID
    env_text = stdin_payload(stdin, "ENV_B64")
    env = UNKNOWN if env_text is UNKNOWN else (parse_dotenv(env_text) if isinstance(env_text, str) else None)
    return Compose(document, env)


def checked_compose(args: ResourceValidationArgs, report: ReportViolation, what: str, skips: Skips) -> Compose | None:
    """The deploy step's Compose for a rule checking WHAT, reporting when it cannot be read."""
    found = compose_of(plain(args.props))
    if found is NOT_A_DEPLOY:
        return None
    if found is CREATE_UNKNOWN:
        skips.add(f"{args.name}: its command is only known once the resources it reads exist, so {what} are checked at `pulumi up`")
        return None
    if found is COMPOSE_UNKNOWN:
        report(f"The compose file must be known at preview (deploy-stack.sh's last argument) for {what} to be checked.")
        return None
    if found is COMPOSE_INVALID:
        report("The compose file must be YAML with a services mapping (deploy-stack.sh's last argument).")
        return None
    return found


def service_label(name: str) -> str:
    return f"Service '{name}'" if name in KNOWN_SERVICES else "A service"


def environment_of(service: Mapping[str, Any]) -> dict[str, Any]:
    """A service's `environment` as a mapping (list entries 'KEY=value'; bare 'KEY' maps to None)."""
    env = service.get("environment") or {}
    if isinstance(env, Mapping):
        return dict(env)
    result: dict[str, Any] = {}
    if isinstance(env, list):
        for item in env:
            key, sep, value = str(item).partition("=")
            result[key] = value if sep else None
    return result


def image_repository(image: str) -> str:
    """name without tag or digest: registry/path/name."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def image_tag(image: str) -> str | None:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def is_glitchtip(name: str, service: Mapping[str, Any]) -> bool:
    image = service.get("image")
    return name in GLITCHTIP_SERVICES or (isinstance(image, str) and "glitchtip" in image_repository(image))


# ---------------------------------------------------------------------------- rule: host keys

_HOST_KEY = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}( .*)?$")


def _check_host_key(key: Any, report: ReportViolation, prop: str) -> None:
    if key is UNKNOWN:
        report(f"The server's host key ({prop}) must be known at preview: set it in config, not from another resource.")
    elif not isinstance(key, str) or not key.strip():
        report(f"The connection must pin the server's host key ({prop}).")
    elif not _HOST_KEY.match(key.strip()):
        report(f"The connection's host key ({prop}) must be one authorized_keys entry such as 'ssh-ed25519 AAAA...'.")


def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_host_verified(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every resource with an SSH `connection` pins the server's host key.

    Shapes: pulumi-command's `connection` {host, hostKey, proxy{hostKey}}; the GlitchTip API
    resources' `connection` {sshHost, sshHostKey} or {baseUrl} (https, or loopback http).
    """
    connection = plain(args.props).get("connection")
    if connection is None:
        return
    if connection is UNKNOWN:
        report("The connection must be known at preview: build it from config, not from another resource.")
        return
    if not isinstance(connection, Mapping):
        return
    if "sshHost" in connection or "baseUrl" in connection or "sshHostKey" in connection:
        base_url = connection.get("baseUrl")
        if base_url is UNKNOWN:
            report("The API connection's baseUrl must be known at preview.")
        elif isinstance(base_url, str) and base_url:
            if not (base_url.startswith("https://") or _is_loopback_url(base_url)):
                report("The API connection must use an https baseUrl (or a loopback one) so the server is verified.")
        else:
            _check_host_key(connection.get("sshHostKey"), report, "sshHostKey")
        return
    _check_host_key(connection.get("hostKey"), report, "hostKey")
    proxy = connection.get("proxy")
    if proxy is UNKNOWN:
        report("The jump host's connection (proxy) must be known at preview.")
    elif isinstance(proxy, Mapping):
        _check_host_key(proxy.get("hostKey"), report, "proxy.hostKey")


# ---------------------------------------------------------------------------- rule: logging


def validate_secret_steps_log_nothing(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A command that reads stdin (where secrets travel) logs nothing and keeps its output secret."""
    if args.resource_type not in COMMAND_TYPES:
        return
    props = plain(args.props)
    stdin = props.get("stdin")
    if stdin is None or stdin == "":
        return
    logging = props.get("logging")
    if logging is UNKNOWN:
        report("The logging setting of a step that reads stdin must be known at preview.")
    elif logging != "none":
        report("A step that reads secrets on stdin must set logging to none.")
    hidden = set(getattr(args.opts, "additional_secret_outputs", None) or [])
    if not {"stdout", "stderr"} <= hidden:
        report("A step that reads secrets on stdin must mark stdout and stderr as secret outputs.")


# ---------------------------------------------------------------------------- rule: no secrets in commands

_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|DSN|URL|AUTH|CRED|PRIVATE|COMMAND")
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Private keys only: a certificate is public.
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"), "a private key block"),
    (re.compile(r"://[0-9a-fA-F]{16,}(:[^@/\s]*)?@"), "a DSN with its key"),
    (re.compile(r"sentry_key=[A-Za-z0-9]"), "a sentry_key parameter"),
    (re.compile(r"PASSWORD=(?![\s'\"]*(\$|$))", re.IGNORECASE | re.MULTILINE), "a PASSWORD= assignment"),
    (re.compile(r"://[^/\s:@'\"]+:[^/\s@'\"$]+@"), "a URL with a password"),
)
"""Secret-looking text, matched in what the operator sees: the header and the arguments
(the bundled scripts, and scripts carried as arguments, are checked-in code that
legitimately parses and writes PASSWORD= lines)."""


GENERATED, CREDENTIAL, FROM_STDIN = "a generated secret", "an SSH credential", "a value its stdin carries"


def stdin_secrets(stdin: str) -> Iterator[str]:
    """The values a step's stdin carries: KEY=value values, raw lines, the base64 blobs, and
    the secret-named entries of env files carried base64-encoded (.env)."""
    for line in stdin.splitlines():
        match = _LINE.match(line)
        if not match:
            yield line.strip()
            continue
        key, value = match.groups()
        yield value
        if key.endswith("_B64"):
            decoded = decode_b64(value)
            if decoded and is_env_file(decoded):
                for name, item in parse_dotenv(decoded).items():
                    if _SECRET_NAME.search(name):
                        yield item


def known_secrets(resources: Iterable[Res], min_length: int) -> dict[str, str]:
    """Every secret value the stack knows, mapped to a description of its source (never the value)."""
    found: dict[str, str] = {}
    rank = {GENERATED: 0, CREDENTIAL: 1, FROM_STDIN: 2}  # a value with two sources is named by the first

    def add(value: Any, source: str) -> None:
        if isinstance(value, str) and len(value.strip()) >= min_length:
            key = value.strip()
            if key not in found or rank[source] < rank[found[key]]:
                found[key] = source

    for resource in resources:
        props = resource.props
        if resource.type in COMMAND_TYPES and isinstance(props.get("stdin"), str):
            for value in stdin_secrets(props["stdin"]):
                add(value, FROM_STDIN)
        for output in RANDOM_SECRETS.get(resource.type, ()):
            add(props.get(output), GENERATED)
        connection = props.get("connection")
        if isinstance(connection, Mapping):
            for key in ("privateKey", "password", "sshPrivateKey", "privateKeyPassword"):
                add(connection.get(key), CREDENTIAL)
            proxy = connection.get("proxy")
            if isinstance(proxy, Mapping):
                for key in ("privateKey", "password", "privateKeyPassword"):
                    add(proxy.get(key), CREDENTIAL)
    return found


def exposed_text(command: str) -> str:
    """The part of a command string written by the program rather than checked in: header and arguments.

    An argument that is a whole script (`#!` first: install-backup.sh carries the backup.sh and
    restore.sh it installs) is checked-in code like the bundled program, so it is left out here;
    the secret values themselves are still searched for in the whole command.
    """
    try:
        rendered = read_command(command)
    except ValueError:
        return command
    return "\n".join((rendered.header, rendered.script, *(a for a in rendered.args if not a.startswith("#!"))))


def validate_no_secrets_in_commands(args: StackValidationArgs, report: ReportViolation) -> None:
    """No secret value or secret-looking text in any command's create/update/delete."""
    resources = stack_resources(args)
    secrets = known_secrets(resources, config_value(args, "minSecretLength"))
    skips = Skips()
    for resource in resources:
        if resource.type not in COMMAND_TYPES:
            continue
        for prop in ("create", "update", "delete"):
            command = resource.props.get(prop)
            if command is UNKNOWN:
                skips.add(f"{resource.label}.{prop} is only known once the resources it reads exist; it is checked at `pulumi up`")
                continue
            if not isinstance(command, str) or not command:
                continue
            source = next((src for value, src in secrets.items() if value in command), None)
            if source:
                report(f"The {prop} command must not contain {source}: pass secrets on stdin.", resource.urn)
                continue
            text = exposed_text(command)
            for pattern, kind in SECRET_PATTERNS:
                if pattern.search(text):
                    report(f"The {prop} command must not contain {kind}: pass secrets on stdin.", resource.urn)
                    break
    skips.finish()


# ---------------------------------------------------------------------------- rule: images

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def validate_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every compose service runs an image pinned by digest, and none is tagged latest."""
    skips = Skips()
    compose = checked_compose(args, report, "images", skips)
    for name, service in (compose.services if compose else {}).items():
        label = service_label(name)
        image = service.get("image")
        if not isinstance(image, str) or not image.strip():
            report(f"{label} must run an image pinned by digest (name:tag@sha256:...), not a build.")
            continue
        if image_tag(image) == "latest":
            report(f"{label} image must not use the latest tag.")
        _, at, digest = image.partition("@")
        if not at or not _DIGEST.match(digest):
            report(f"{label} image must be pinned by digest (name:tag@sha256:...).")
    skips.finish()


# ---------------------------------------------------------------------------- rule: memory

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_UNIT = {"": 1 / 2**20, "b": 1 / 2**20, "k": 1 / 2**10, "m": 1, "g": 2**10}


def size_mib(value: Any) -> float | None:
    """A compose memory size (bytes as a number, or '512m', '1g', '1.5GB') in MiB."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 2**20
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            return float(match.group(1)) * _UNIT[match.group(2).lower()]
    return None


def memory_limit(service: Mapping[str, Any]) -> Any:
    """The service's memory limit: mem_limit, or deploy.resources.limits.memory (None if neither)."""
    if service.get("mem_limit") is not None:
        return service["mem_limit"]
    deploy = service.get("deploy") or {}
    limits = ((deploy.get("resources") or {}).get("limits") or {}) if isinstance(deploy, Mapping) else {}
    return limits.get("memory") if isinstance(limits, Mapping) else None


def validate_memory_budget(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every service has a memory limit; together they fit the memory budget.

    The budget is the compose file's own `x-memory-budget-mb` when the program writes it
    there, else the pack config's memoryBudgetMb (default 1024).
    """
    skips = Skips()
    compose = checked_compose(args, report, "memory limits", skips)
    if compose is not None:
        total, complete = 0.0, True
        for name, service in compose.services.items():
            label = service_label(name)
            limit = memory_limit(service)
            if limit is None:
                report(f"{label} must have a memory limit (mem_limit).")
                complete = False
                continue
            mib = size_mib(limit)
            if mib is None or mib <= 0:
                report(f"{label} memory limit must be a size such as 512m.")
                complete = False
                continue
            total += mib
        carried = compose.document.get(BUDGET_EXTENSION)
        budget = carried if isinstance(carried, int) and not isinstance(carried, bool) else config_value(args, "memoryBudgetMb")
        if complete and total > budget:
            report("The services' memory limits must add up to no more than the memory budget (memoryBudgetMb).")
    skips.finish()


# ---------------------------------------------------------------------------- rule: published ports


@dataclass(frozen=True)
class Published:
    host_ip: str | None
    """None: every interface (compose's default)."""
    host_port: str | None
    """None: a random port."""


def published_ports(service: Mapping[str, Any]) -> list[Published] | None:
    """What a service publishes on the host; None when an entry cannot be read (interpolated, malformed)."""
    result: list[Published] = []
    entries = service.get("ports") or []
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, Mapping):
            ip, port = entry.get("host_ip"), entry.get("published")
            if (ip is not None and not isinstance(ip, str)) or "$" in f"{ip}{port}":
                return None
            result.append(Published(ip or None, None if port is None else str(port)))
            continue
        text = str(entry)
        if "$" in text:
            return None
        text = text.split("/", 1)[0]
        ip = None
        if text.startswith("["):
            ip, sep, rest = text[1:].partition("]:")
            if not sep:
                return None
            parts = rest.split(":")
        else:
            parts = text.split(":")
            if len(parts) == 3:
                ip, parts = parts[0], parts[1:]
            elif len(parts) > 3:
                return None
        if len(parts) == 2:
            result.append(Published(ip or None, parts[0] or None))
        elif len(parts) == 1:
            result.append(Published(ip or None, None))
        else:
            return None
    return result


def _is_loopback(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


def exposure_is_tls(compose: Compose) -> bool:
    """exposure=tls: GlitchTip's public URL (GLITCHTIP_DOMAIN) is https on a public name.

    Derived from GlitchTip's own configuration, not from the proxy's presence, so adding a
    proxy service alone never opens the server.
    """
    for name, service in compose.services.items():
        if is_glitchtip(name, service):
            domain = environment_of(service).get("GLITCHTIP_DOMAIN")
            if isinstance(domain, str) and domain.startswith("https://") and not _is_loopback_url(domain):
                return True
    return False


def validate_loopback_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Only 127.0.0.1 is published, except the TLS proxy's 80/443 when exposure is tls."""
    skips = Skips()
    compose = checked_compose(args, report, "published ports", skips)
    if compose is not None:
        proxy = config_value(args, "proxyService")
        proxy_ports = {str(p) for p in config_value(args, "proxyPorts")}
        tls = exposure_is_tls(compose)
        for name, service in compose.services.items():
            label = service_label(name)
            if service.get("network_mode") == "host":
                report(f"{label} must not use the host's network (network_mode: host).")
                continue
            published = published_ports(service)
            if published is None:
                report(f"{label} must publish its ports as literal 127.0.0.1:PORT:PORT entries.")
                continue
            public = [p for p in published if not _is_loopback(p.host_ip)]
            if not public:
                continue
            if name != proxy:
                report(f"{label} must publish its ports on 127.0.0.1 only.")
            elif not tls:
                report(f"{label} must publish its ports on 127.0.0.1 only unless exposure is tls.")
            elif any(p.host_port not in proxy_ports for p in public):
                report(f"{label} must publish only ports {' and '.join(sorted(proxy_ports, key=int))} beyond 127.0.0.1.")
    skips.finish()


# ---------------------------------------------------------------------------- rule: registration

_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}$|^\$([A-Za-z_][A-Za-z0-9_]*)$")
_FALSE = frozenset({"false", "0", "no", "off"})


def _uses_env_file(service: Mapping[str, Any]) -> bool:
    env_file = service.get("env_file")
    files = env_file if isinstance(env_file, list) else [env_file] if env_file else []
    paths = [f.get("path") if isinstance(f, Mapping) else f for f in files]
    return any(str(p).rstrip("/").rsplit("/", 1)[-1] == ".env" for p in paths if p)


NOT_LITERAL = object()


def flag_value(flag: str, service: Mapping[str, Any], env: Any) -> Any:
    """The value a service's FLAG gets: from `environment` (a ${VAR} reference resolved in
    .env), or from .env through env_file; UNKNOWN when it comes from an unknown .env;
    NOT_LITERAL for any other interpolation; None when unset."""
    environment = environment_of(service)
    if flag in environment:
        value = environment[flag]
        if not isinstance(value, str):
            return value
        ref = _REFERENCE.match(value)
        if ref:
            if env is UNKNOWN:
                return UNKNOWN
            found = (env or {}).get(ref.group(1) or ref.group(4))
            operator, default = ref.group(2), ref.group(3)
            if (operator == ":-" and not found) or (operator == "-" and found is None):
                return default
            return found
        return NOT_LITERAL if "$" in value else value
    if _uses_env_file(service):
        return UNKNOWN if env is UNKNOWN else (env or {}).get(flag)
    return None


def validate_registration_closed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """GlitchTip's services set ENABLE_USER_REGISTRATION and ENABLE_ORGANIZATION_CREATION to False.

    In compose.yaml's environment, or (through a ${VAR} reference or env_file: .env) in the
    secret .env, which is read from stdin; before its random secrets exist, .env is unknown
    and a flag that lives only there is skipped with that reason.
    """
    skips = Skips()
    compose = checked_compose(args, report, "registration settings", skips)
    for name, service in (compose.services if compose else {}).items():
        if not is_glitchtip(name, service):
            continue
        for flag in REGISTRATION_FLAGS:
            value = flag_value(flag, service, compose.env)
            if value is UNKNOWN:
                skips.add(f"{args.name}: {flag} is read from .env, which is only known once its secrets exist; it is checked at `pulumi up`")
            elif value is NOT_LITERAL:
                report(f"{service_label(name)} must set {flag} to a literal False.")
            elif not (value is False or (isinstance(value, str) and value.strip().lower() in _FALSE)):
                report(f"{service_label(name)} must set {flag} to False.")
    skips.finish()


# ---------------------------------------------------------------------------- rule: backups


def cron_hours(schedule: str) -> set[int] | None:
    """The hours a five-field cron schedule fires in; None when the schedule is not valid."""
    fields = schedule.split()
    if len(fields) != 5:
        return None
    hours: set[int] = set()
    for item in fields[1].split(","):
        base, _, step = item.partition("/")
        if step and not step.isdigit():
            return None
        if base == "*":
            low, high = 0, 23
        else:
            bounds = base.split("-")
            if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
                return None
            low, high = int(bounds[0]), int(bounds[-1])
            if step and len(bounds) == 1:
                high = 23
        if not 0 <= low <= high <= 23:
            return None
        hours.update(range(low, high + 1, int(step or 1)))
    return hours


@dataclass(frozen=True)
class BackupSettings:
    schedule: str | None
    retention_days: int | None


BACKUP_CONF_ARG, BACKUP_CRON_ARG = 4, 5
"""install-backup.sh INSTALL_DIR BACKUP_DIR CRON_FILE LOG_FILE CONF CRON BACKUP_SH RESTORE_SH:
the positions of backup.conf's text and the cron.d entry's text."""


def backup_settings(step: Rendered) -> BackupSettings:
    """Schedule and retention of an install-backup.sh step, from backup.conf and the cron.d
    entry among its arguments (part of the command string, so known whenever the command is)."""
    args = step.args
    conf = args[BACKUP_CONF_ARG] if len(args) > BACKUP_CONF_ARG else ""
    cron = args[BACKUP_CRON_ARG] if len(args) > BACKUP_CRON_ARG else ""
    schedule = None
    for line in cron.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and not _LINE.match(line.strip()):
            schedule = " ".join(line.split()[:5])
            break
    retention = parse_dotenv(conf).get("RETENTION_DAYS")
    return BackupSettings(schedule, int(retention) if retention and retention.isdigit() else None)


def _host_of(resource: Res) -> Any:
    """The server a command runs on (UNKNOWN when its connection is unknown)."""
    connection = resource.props.get("connection")
    if isinstance(connection, Mapping):
        return connection.get("host")
    return UNKNOWN if connection is UNKNOWN else None


def _steps(resources: Iterable[Res], script: str) -> list[tuple[Res, Rendered]]:
    found = []
    for resource in resources:
        if resource.type in COMMAND_TYPES:
            step = step_of(resource.props)
            if isinstance(step, Rendered) and step.script == script:
                found.append((resource, step))
    return found


def validate_backup_configured(args: StackValidationArgs, report: ReportViolation) -> None:
    """A BackupJob accompanies the stack on its server, keeps sets long enough, and avoids 05:00."""
    resources = stack_resources(args)
    skips = Skips()
    for resource in resources:
        if resource.type in COMMAND_TYPES and step_of(resource.props) is UNKNOWN:
            skips.add(f"{resource.label}: its command is only known once the resources it reads exist; backups are checked at `pulumi up`")
    deploys = _steps(resources, DEPLOY_SCRIPT)
    backups = _steps(resources, BACKUP_SCRIPT)
    min_days = config_value(args, "minRetentionDays")
    hour = config_value(args, "maintenanceHour")
    for deploy, _ in deploys:
        host = _host_of(deploy)
        hosts = [_host_of(b) for b, _ in backups]
        if not backups:
            report("A BackupJob (install-backup.sh) must accompany the GlitchTip stack.", deploy.urn)
        elif host is not UNKNOWN and UNKNOWN not in hosts and host not in hosts:
            report("A BackupJob must back up the server the GlitchTip stack runs on.", deploy.urn)
    for backup, step in backups:
        found = backup_settings(step)
        if found.retention_days is None:
            report("The backup's retention must be readable (RETENTION_DAYS in backup.conf).", backup.urn)
        elif found.retention_days < min_days:
            report(f"Backups must be kept at least {min_days} days (backupRetentionDays).", backup.urn)
        hours = cron_hours(found.schedule) if found.schedule else None
        if hours is None:
            report("The backup schedule must be a readable five-field cron schedule.", backup.urn)
        elif hour in hours:
            report(f"The backup schedule must stay out of GlitchTip's {hour:02d}:00 maintenance hour.", backup.urn)
    skips.finish()


# ---------------------------------------------------------------------------- rule: cutover gate

_GATE_DEFINED = re.compile(r"^gate\(\)\s*\{", re.MULTILINE)
_GATE_CALLED = re.compile(r"\bgate\s+\"\$")


def depends_on(resource: Res, by_urn: Mapping[str, Res]) -> set[str]:
    """Every URN RESOURCE waits for, directly or through the resources it depends on."""
    seen: set[str] = set()
    todo = list(resource.dependencies)
    while todo:
        urn = todo.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in by_urn:
            todo.extend(by_urn[urn].dependencies)
    return seen


def _host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _is_loopback_host(host: str | None) -> bool:
    return bool(host) and _is_loopback_url(f"http://{host}/")


def validate_app_dsn_gated(args: StackValidationArgs, report: ReportViolation) -> None:
    """A cutover to GlitchTip (set-dsn.sh TARGET=glitchtip) or to the parallel run (TARGET=dual) cannot happen ungated.

    The gate is a step of set-dsn.sh itself (components/remote/set-dsn.sh `gate`): before
    the app's env file changes it checks GLITCHTIP_URL's /_health/ and sends a test event
    to the target DSN, which must come back acknowledged (and visible, with an API token).
    So the rule checks what makes that gate meaningful: the program that runs still calls
    it; the step waits for the stack's deploy (the gate checks a running GlitchTip, not a
    half-deployed one); GLITCHTIP_URL is this stack's GlitchTip (loopback, or its https
    domain); and the DSN on stdin belongs to it. With TARGET=dual the app's DSN is the
    relay's: the step must also wait for the relay step (install-relay.sh), the DSN must be
    http://KEY@127.0.0.1:<the relay's PORT>/PROJECT_ID, and GLITCHTIP_DSN= (where the relay
    copies to, which the gate proves first) must belong to this stack's GlitchTip.
    A rollback (TARGET=sentry) is never gated.
    """
    resources = stack_resources(args)
    by_urn = {r.urn: r for r in resources}
    deploys = _steps(resources, DEPLOY_SCRIPT)
    relays = _steps(resources, RELAY_SCRIPT)
    domains = set()
    for deploy, _ in deploys:
        compose = compose_of(deploy.props)
        if isinstance(compose, Compose):
            for name, service in compose.services.items():
                if is_glitchtip(name, service):
                    domains.add(_host(environment_of(service).get("GLITCHTIP_DOMAIN")))
    domains.discard(None)
    skips = Skips()
    for resource, step in _steps(resources, DSN_SCRIPT):
        if len(step.args) < 2 or step.args[1] not in ("glitchtip", "dual"):
            continue
        target = step.args[1]
        waits_for = depends_on(resource, by_urn)
        if not (_GATE_DEFINED.search(step.program) and _GATE_CALLED.search(step.program)):
            if target == "dual":
                report("The switch to dual must run set-dsn.sh's gate before the app's DSN changes.", resource.urn)
            else:
                report("The cutover to glitchtip must run set-dsn.sh's gate before the app's DSN changes.", resource.urn)
        if not deploys:
            if target == "dual":
                report("An AppDsn aimed at dual must have a GlitchTip stack (deploy-stack.sh) to mirror to.", resource.urn)
            else:
                report("An AppDsn aimed at glitchtip must have a GlitchTip stack (deploy-stack.sh) to cut over to.", resource.urn)
        elif not {d.urn for d, _ in deploys} & waits_for:
            if target == "dual":
                report("An AppDsn aimed at dual must depend on the stack's deploy step, so its gate checks a running GlitchTip.", resource.urn)
            else:
                report("An AppDsn aimed at glitchtip must depend on the stack's deploy step, so its gate checks a running GlitchTip.", resource.urn)
        relay_ports: set[str] = set()
        if target == "dual":
            waited = [r for r, _ in relays if r.urn in waits_for]
            unknown = [u for u in waits_for if u in by_urn and by_urn[u].type in COMMAND_TYPES and step_of(by_urn[u].props) is UNKNOWN]
            if not waited and unknown:
                skips.add(f"{resource.label}: a step it waits for is only known once the resources it reads exist; the relay dependency is checked at `pulumi up`")
            elif not waited:
                report("An AppDsn aimed at dual must depend on the relay step (install-relay.sh), so the app never points at a relay that is not running.", resource.urn)
            # The port the relay listens on: of the relay step it waits for (else of any: one finding per fault).
            relay_ports = {s.args[2] for r, s in relays if (r in waited or not waited) and len(s.args) > 2}
        url_host = _host(step.args[2]) if len(step.args) > 2 else None
        if not (_is_loopback_host(url_host) or url_host in domains):
            report("The cutover gate must check this stack's GlitchTip (a loopback GLITCHTIP_URL or the stack's domain).", resource.urn)
        stdin = resource.props.get("stdin")
        if stdin is UNKNOWN:
            skips.add(f"{resource.label}: the DSN on stdin comes from a GlitchTip project created by this update; it is checked at `pulumi up`")
            continue
        fields = stdin_lines(stdin) if isinstance(stdin, str) else {}
        dsn = fields.get("DSN")
        if not dsn:
            if target == "dual":
                report("An AppDsn aimed at dual must carry the relay's DSN on stdin (DSN=...).", resource.urn)
            else:
                report("An AppDsn aimed at glitchtip must carry the target DSN on stdin (DSN=...).", resource.urn)
            continue
        if target == "dual":
            try:
                parts = urlsplit(dsn)
                port = parts.port
            except ValueError:
                parts, port = None, None
            if not (parts and parts.hostname == "127.0.0.1" and port is not None and str(port) in relay_ports):
                report("An AppDsn aimed at dual must use the relay's DSN (http://KEY@127.0.0.1:<relayPort>/PROJECT_ID, the relay step's port).", resource.urn)
            mirror_host = _host(fields.get("GLITCHTIP_DSN"))
            if not (_is_loopback_host(mirror_host) or mirror_host in domains or (mirror_host and mirror_host == url_host)):
                report("An AppDsn aimed at dual must carry, as GLITCHTIP_DSN, a DSN of this stack's GlitchTip for the gate to prove.", resource.urn)
            continue
        dsn_host = _host(dsn)
        if not (_is_loopback_host(dsn_host) or dsn_host in domains or (dsn_host and dsn_host == url_host)):
            report("An AppDsn aimed at glitchtip must use a DSN of this stack's GlitchTip.", resource.urn)
    skips.finish()


# ---------------------------------------------------------------------------- rule: docker

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def validate_docker_pinned(args: StackValidationArgs, report: ReportViolation) -> None:
    """Docker Engine comes from Docker's apt repository (install-docker.sh) at a pinned version."""
    resources = stack_resources(args)
    dockers = _steps(resources, DOCKER_SCRIPT)
    if not dockers:
        for deploy, _ in _steps(resources, DEPLOY_SCRIPT):
            report("Docker must be installed from Docker's apt repository by install-docker.sh.", deploy.urn)
    for resource, step in dockers:
        if not step.args or not _VERSION.match(step.args[0]):
            report("Docker must be installed at a pinned version (install-docker.sh VERSION, such as 28.5.2).", resource.urn)


# ---------------------------------------------------------------------------- the pack's rules


def _schema(**properties: dict[str, Any]) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties)


POLICIES = [
    ResourceValidationPolicy(
        name="remote-host-verified",
        description="Checks whether every remote resource verifies the server's SSH host key.",
        validate=validate_host_verified,
    ),
    StackValidationPolicy(
        name="no-secrets-in-commands",
        description="Checks whether remote commands keep secrets out of their create, update and delete strings.",
        validate=validate_no_secrets_in_commands,
        config_schema=_schema(
            minSecretLength={
                "type": "integer",
                "minimum": 4,
                "default": DEFAULTS["minSecretLength"],
                "description": "Shorter secret values are not searched for (they would match by chance).",
            }
        ),
    ),
    ResourceValidationPolicy(
        name="secret-steps-log-nothing",
        description="Checks whether steps that read secrets on stdin log nothing and keep their output secret.",
        validate=validate_secret_steps_log_nothing,
    ),
    ResourceValidationPolicy(
        name="images-pinned-by-digest",
        description="Checks whether every compose service runs an image pinned by digest and never a latest tag.",
        validate=validate_images_pinned,
    ),
    ResourceValidationPolicy(
        name="memory-within-budget",
        description="Checks whether every compose service has a memory limit and their sum fits the memory budget.",
        validate=validate_memory_budget,
        config_schema=_schema(
            memoryBudgetMb={
                "type": "integer",
                "minimum": 1,
                "default": DEFAULTS["memoryBudgetMb"],
                "description": "MiB all containers may use together (the compose file's x-memory-budget-mb wins).",
            }
        ),
    ),
    ResourceValidationPolicy(
        name="loopback-only-ports",
        description="Checks whether nothing is published beyond 127.0.0.1 except the TLS proxy's 80 and 443 with exposure tls.",
        validate=validate_loopback_ports,
        config_schema=_schema(
            proxyService={"type": "string", "default": DEFAULTS["proxyService"], "description": "The TLS proxy's compose service."},
            proxyPorts={
                "type": "array",
                "items": {"type": "integer"},
                "default": DEFAULTS["proxyPorts"],
                "description": "The ports the proxy may publish publicly.",
            },
        ),
    ),
    ResourceValidationPolicy(
        name="registration-closed",
        description="Checks whether GlitchTip's user registration and organization creation are off.",
        validate=validate_registration_closed,
    ),
    StackValidationPolicy(
        name="backup-configured",
        description="Checks whether a BackupJob accompanies the stack with enough retention and a schedule clear of 05:00.",
        validate=validate_backup_configured,
        config_schema=_schema(
            minRetentionDays={"type": "integer", "minimum": 1, "default": DEFAULTS["minRetentionDays"], "description": "Fewest days backups are kept."},
            maintenanceHour={
                "type": "integer",
                "minimum": 0,
                "maximum": 23,
                "default": DEFAULTS["maintenanceHour"],
                "description": "GlitchTip's daily maintenance hour, which backups avoid.",
            },
        ),
    ),
    StackValidationPolicy(
        name="app-dsn-gated",
        description="Checks whether a cutover to GlitchTip (or to the dual parallel run, through the relay) waits for the stack (and the relay) and passes set-dsn.sh's health and test-event gate.",
        validate=validate_app_dsn_gated,
    ),
    StackValidationPolicy(
        name="docker-pinned",
        description="Checks whether Docker comes from Docker's official repository at a pinned version.",
        validate=validate_docker_pinned,
        enforcement_level=EnforcementLevel.ADVISORY,
    ),
]
