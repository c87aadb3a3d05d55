"""GlitchTipStack: GlitchTip, Postgres and (optionally) Valkey as one compose project on the server.

The compose file is rendered here, in Python, by pure functions (`render_compose`,
`render_env`) that the unit tests call directly; one remote step
(components/remote/deploy-stack.sh) writes it and the `.env` next to it and runs
`docker compose up -d --wait`. Compose recreates only the services whose definition
changed, so a new memory limit for GlitchTip does not restart Postgres.

- Images are pinned by digest (`name:tag@sha256:...`): taken from config, or resolved
  from the registry at preview with pulumi-docker's daemonless `getRegistryImage`.
- compose.yaml holds no secret: it is an argument of the deploy command, so `pulumi
  preview --diff` shows exactly what changes in it (a digest, a memory limit).
- Secrets (SECRET_KEY, the Postgres password, DATABASE_URL, EMAIL_URL) live only in
  `.env` (0600), which reaches the server on stdin together with the superuser's
  password; compose.yaml refers to them as `${NAME:?...}`, so each service gets only
  the secrets it needs. Nothing secret is ever in a command string.
- GlitchTip is published on 127.0.0.1 only (Docker-published ports bypass ufw);
  registration and organization creation are off, and the superuser exists before the
  deploy step reports success.
- Destroy runs components/remote/teardown-stack.sh: a final backup when BackupJob
  installed one, then `compose down`; volumes stay unless deleteDataOnDestroy.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import yaml
from pulumi_command import remote

from . import relay as relay_
from .proxy import DEFAULT_IMAGE as DEFAULT_CADDY_IMAGE, ProxySpec, add_to_compose
from .remote import Step, component_depends_on, run_script
from .secrets import GlitchTipSecrets
from .settings import Settings, postgres_major

PROJECT = "glitchtip"
"""The compose project name: containers, networks and volumes are prefixed with it."""
DB_USER = DB_NAME = "glitchtip"
CONTAINER_PORT = 8000
WAIT_SECONDS = 600
"""Bound of `docker compose up --wait` and of the health gate, each (first start runs migrations)."""
DEFAULT_IMAGES = {
    "glitchtip": "glitchtip/glitchtip:{version}",
    "postgres": "postgres:18.1",
    "valkey": "valkey/valkey:8.1",
    "caddy": DEFAULT_CADDY_IMAGE,
    "relay": relay_.DEFAULT_IMAGE,
}
REGISTRY_LOOKUP = "docker:index/getRegistryImage:getRegistryImage"
ENV_KEYS = ("SECRET_KEY", "POSTGRES_PASSWORD", "DATABASE_URL", "EMAIL_URL")
"""What `.env` holds: exactly the secrets, nothing else."""

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Values go single-quoted into .env: literal for compose v2 (and python-dotenv), as long
# as they hold no quote, backslash, newline or '$' (pulumi-traps 14).
_ENV_UNSAFE = re.compile(r"['\\\n\r\x00$]")
_HEALTH_PROBE = (
    "import sys, urllib.request as u; "
    f"sys.exit(0 if u.urlopen('http://127.0.0.1:{CONTAINER_PORT}/_health/', timeout=5).read().strip() == b'ok' else 1)"
)


# ---------------------------------------------------------------------------- pure rendering


@dataclass(frozen=True)
class Images:
    """Image references, each pinned by digest (name:tag@sha256:...)."""

    glitchtip: str
    postgres: str
    valkey: str | None = None
    caddy: str | None = None
    relay: str | None = None


@dataclass(frozen=True)
class ComposeSpec:
    """Everything compose.yaml is made from. Holds no secret."""

    images: Images
    """The digest-pinned images."""
    server_mode: str
    """all-in-one (one GlitchTip container) or split (migrate, web, worker)."""
    valkey: bool
    """Run a Valkey service for cache and queue; without it GlitchTip uses Postgres."""
    port: int
    """Port published on the server's 127.0.0.1, forwarded to GlitchTip's 8000."""
    public_url: str
    """GLITCHTIP_DOMAIN: the URL users and SDKs reach GlitchTip at."""
    from_email: str
    """DEFAULT_FROM_EMAIL."""
    retention_days: int
    """GLITCHTIP_MAX_EVENT_LIFE_DAYS."""
    memory_limits_mb: Mapping[str, int] = field(default_factory=dict)
    """Memory limit per service in MiB (Settings.memory_limits_mb: their sum fits the budget)."""
    memory_budget_mb: int | None = None
    """MiB the services may use together (Settings.memory_budget_mb), written as the top-level
    `x-memory-budget-mb` that the policy pack's memory-within-budget rule checks the limits
    against (compose ignores `x-` fields); None: not written."""
    proxy: ProxySpec | None = None
    """The TLS proxy (exposure=tls): Caddy publishes 80/443 (components/proxy.py); None: nothing public."""

    @classmethod
    def from_settings(cls, settings: Settings, images: Images) -> ComposeSpec:
        return cls(
            images=images,
            server_mode=settings.server_mode,
            valkey=settings.valkey,
            port=settings.glitchtip_port,
            public_url=settings.public_url,
            from_email=settings.from_email,
            retention_days=settings.retention_days,
            memory_limits_mb=dict(settings.memory_limits_mb),
            # The relay's share (reserved whatever dsnTarget is) goes to its own compose project
            # (components/relay.py): a flip to or from dual leaves this compose.yaml as it is.
            memory_budget_mb=settings.memory_budget_mb - settings.memory_limits_mb.get("relay", 0),
            proxy=ProxySpec.from_settings(settings) if settings.exposure == "tls" else None,
        )

    @property
    def app_services(self) -> list[str]:
        """The services running GlitchTip's code, the one serving HTTP first."""
        return ["glitchtip"] if self.server_mode == "all-in-one" else ["web", "worker", "migrate"]


def relay_spec(settings: Settings) -> relay_.RelaySpec:
    """The relay's facts for dsnTarget=dual (its own compose project, components/relay.py: never in compose.yaml)."""
    return relay_.RelaySpec(
        port=settings.relay_port,
        upstream_service="glitchtip" if settings.server_mode == "all-in-one" else "web",
        glitchtip_port=settings.glitchtip_port,
    )


def postgres_layout(image: str) -> tuple[str, str]:
    """(volume mount point, PGDATA) for a Postgres image: 18+ moved both (glitchtip-facts.md)."""
    major = postgres_major(image)
    if major is None:
        raise ValueError(f"cannot tell the Postgres major version from {image!r}: its tag must start with it")
    if major >= 18:
        return "/var/lib/postgresql", f"/var/lib/postgresql/{major}/docker"
    return "/var/lib/postgresql/data", "/var/lib/postgresql/data"


def postgres_command(limit_mb: int) -> list[str]:
    """`postgres -c ...` tuned for a small container: caches sized from its memory limit."""
    shared = max(32, limit_mb // 4 // 16 * 16)
    settings = {
        "shared_buffers": f"{shared}MB",
        "effective_cache_size": f"{max(64, limit_mb // 2 // 16 * 16)}MB",
        "work_mem": "4MB",
        "maintenance_work_mem": f"{max(16, limit_mb // 8 // 16 * 16)}MB",
        "max_parallel_workers_per_gather": "1",
    }
    command = ["postgres"]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    return command


def web_tuning(limit_mb: int, all_in_one: bool) -> dict[str, str]:
    """Granian and malloc settings that keep the web process under its container's limit.

    One granian worker; it is recycled when its RSS passes a share of the container's
    limit (all-in-one leaves the rest to the embedded worker and scheduler), so upstream's
    slow RSS creep (~300 MB -> ~3 GB over days) ends in a graceful respawn, not an OOM kill.
    """
    share = 0.55 if all_in_one else 0.8
    return {
        "GRANIAN_WORKERS": "1",
        "WEB_CONCURRENCY": "1",
        "GRANIAN_WORKERS_MAX_RSS": str(max(128, int(limit_mb * share))),
        "MALLOC_ARENA_MAX": "2",
    }


def _secret_ref(name: str) -> str:
    return "${" + name + ":?is missing from .env}"


def _memory(limit_mb: int) -> dict[str, str]:
    # memswap_limit = mem_limit: the limit cannot be stretched with swap.
    return {"mem_limit": f"{limit_mb}m", "memswap_limit": f"{limit_mb}m"}


def _literal(value: str) -> str:
    """A value compose must not interpolate."""
    return value.replace("$", "$$")


def render_compose(spec: ComposeSpec) -> str:
    """compose.yaml for the spec, as YAML text. Pure: same spec, same bytes."""
    limits = spec.memory_limits_mb
    services: dict[str, dict] = {}
    pg_mount, pgdata = postgres_layout(spec.images.postgres)
    services["postgres"] = {
        "image": spec.images.postgres,
        "restart": "unless-stopped",
        "command": postgres_command(limits["postgres"]),
        "environment": {
            "POSTGRES_USER": DB_USER,
            "POSTGRES_DB": DB_NAME,
            "POSTGRES_PASSWORD": _secret_ref("POSTGRES_PASSWORD"),
            # Passwords on every TCP connection, in-container loopback included (never trust).
            "POSTGRES_HOST_AUTH_METHOD": "scram-sha-256",
            "POSTGRES_INITDB_ARGS": "--auth-host=scram-sha-256",
            "PGDATA": pgdata,
        },
        "volumes": [f"pg-data:{pg_mount}"],
        "healthcheck": {
            # -h 127.0.0.1: the init-time server listens on the socket only, so this
            # turns healthy only once the real server accepts TCP connections.
            "test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", DB_USER, "-d", DB_NAME],
            "interval": "5s",
            "timeout": "5s",
            "retries": 12,
            "start_period": "120s",
        },
        "stop_grace_period": "60s",
        **_memory(limits["postgres"]),
    }
    depends: dict[str, dict] = {"postgres": {"condition": "service_healthy"}}
    if spec.valkey:
        if not spec.images.valkey:
            raise ValueError("valkey is on but no Valkey image was given")
        cache_mb = max(16, limits["valkey"] * 3 // 4)
        services["valkey"] = {
            "image": spec.images.valkey,
            "restart": "unless-stopped",
            # In memory only; volatile-lru evicts cache entries (they expire), never queued tasks.
            "command": ["valkey-server", "--save", "", "--appendonly", "no",
                        "--maxmemory", f"{cache_mb}mb", "--maxmemory-policy", "volatile-lru"],
            "healthcheck": {
                "test": ["CMD-SHELL", "valkey-cli ping | grep -q PONG"],
                "interval": "5s",
                "timeout": "5s",
                "retries": 12,
            },
            **_memory(limits["valkey"]),
        }
        depends["valkey"] = {"condition": "service_healthy"}

    environment = {
        "SECRET_KEY": _secret_ref("SECRET_KEY"),
        "DATABASE_URL": _secret_ref("DATABASE_URL"),
        "EMAIL_URL": _secret_ref("EMAIL_URL"),
        # Always set: unset falls back to redis://redis:6379/0; "" means Postgres does it all.
        "VALKEY_URL": "redis://valkey:6379/0" if spec.valkey else "",
        "GLITCHTIP_DOMAIN": _literal(spec.public_url),
        "DEFAULT_FROM_EMAIL": _literal(spec.from_email),
        "ENABLE_USER_REGISTRATION": "False",
        "ENABLE_ORGANIZATION_CREATION": "False",
        "GLITCHTIP_MAX_EVENT_LIFE_DAYS": str(spec.retention_days),
    }
    health = {
        "test": ["CMD", "python3", "-c", _HEALTH_PROBE],  # the image has no curl
        "interval": "15s",
        "timeout": "10s",
        "retries": 5,
        "start_period": f"{WAIT_SECONDS}s",  # the first start runs every migration
    }
    common = {"restart": "unless-stopped", "volumes": ["uploads:/code/uploads"]}
    published = [f"127.0.0.1:{spec.port}:{CONTAINER_PORT}"]
    if spec.server_mode == "all-in-one":
        services["glitchtip"] = {
            "image": spec.images.glitchtip,
            **common,
            "depends_on": depends,
            "environment": {"SERVER_ROLE": "all_in_one", **environment,
                            **web_tuning(limits["glitchtip"], all_in_one=True)},
            "ports": published,
            "healthcheck": health,
            **_memory(limits["glitchtip"]),
        }
    else:
        migrated = {**depends, "migrate": {"condition": "service_completed_successfully"}}
        services["migrate"] = {
            "image": spec.images.glitchtip,
            "command": ["./bin/run-migrate.sh"],
            "restart": "no",
            "depends_on": depends,
            "environment": {**environment, "MALLOC_ARENA_MAX": "2"},
            **_memory(limits["migrate"]),
        }
        services["web"] = {
            "image": spec.images.glitchtip,
            **common,
            "depends_on": migrated,
            "environment": {"SERVER_ROLE": "web", **environment, **web_tuning(limits["web"], all_in_one=False)},
            "ports": published,
            "healthcheck": health,
            **_memory(limits["web"]),
        }
        services["worker"] = {
            "image": spec.images.glitchtip,
            **common,
            "depends_on": migrated,
            "environment": {"SERVER_ROLE": "worker", **environment, "MALLOC_ARENA_MAX": "2"},
            **_memory(limits["worker"]),
        }
    document: dict = {"name": PROJECT}
    if spec.memory_budget_mb is not None:  # policies/rules.py (memory-within-budget) checks the limits against it
        document["x-memory-budget-mb"] = spec.memory_budget_mb
    document.update({"services": services, "volumes": {"pg-data": {}, "uploads": {}}})
    if spec.proxy:
        add_to_compose(document, spec.proxy, spec.images.caddy, limits["caddy"])
    header = (
        "# GlitchTip on this server, written by glitchtip-migration (pulumi): edits are overwritten.\n"
        "# Secrets come from .env (mode 0600) next to this file.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=4096)


def database_url(password: str) -> str:
    return f"postgres://{DB_USER}:{password}@postgres:5432/{DB_NAME}"


def env_values(secret_key: str, postgres_password: str, email_url: str) -> dict[str, str]:
    """The `.env` entries (ENV_KEYS, in order)."""
    return {
        "SECRET_KEY": secret_key,
        "POSTGRES_PASSWORD": postgres_password,
        "DATABASE_URL": database_url(postgres_password),
        "EMAIL_URL": email_url,
    }


def render_env(values: Mapping[str, str]) -> str:
    """`.env` text: one KEY='value' line each, single-quoted so compose takes it literally."""
    lines = ["# GlitchTip's secrets, written by glitchtip-migration (pulumi). Mode 0600; edits are overwritten."]
    for key, value in values.items():
        if not _ENV_KEY.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
        if not value or _ENV_UNSAFE.search(value):
            raise ValueError(f".env value of {key} is empty or holds a quote, backslash, '$' or newline")
        lines.append(f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def render_stdin(env_text: str, admin_password: str) -> str:
    """What deploy-stack.sh reads on stdin: ENV_B64=<.env, base64> and ADMIN_PASSWORD=<password> lines."""
    if not re.fullmatch(r"[A-Za-z0-9]{12,}", admin_password):
        raise ValueError("the admin password must be alphanumeric")
    return f"ENV_B64={base64.b64encode(env_text.encode()).decode()}\nADMIN_PASSWORD={admin_password}\n"


def parse_results(stdout: str) -> dict[str, str]:
    """deploy-stack.sh's `key=value` result lines."""
    results = {}
    for line in (stdout or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[a-z][a-z0-9_.-]*", key):
            results[key] = value.strip()
    return results


# ---------------------------------------------------------------------------- the component


def pinned_image(configured: str, default: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The configured digest-pinned reference, or DEFAULT resolved to its registry digest."""
    if configured:
        return pulumi.Output.from_input(configured)
    found = docker.get_registry_image_output(name=default, opts=pulumi.InvokeOutputOptions(parent=parent))

    def pin(digest: str) -> str:
        if not digest or not _DIGEST.match(digest):
            raise pulumi.RunError(f"the registry returned no sha256 digest for {default}; set the image with its digest in config")
        return f"{default}@{digest}"

    return found.sha256_digest.apply(pin)


@dataclass(frozen=True)
class GlitchTipStackArgs:
    """Inputs of GlitchTipStack."""

    connection: pulumi.Input[remote.ConnectionArgs]
    """The verified SSH connection (components.remote.connection_args)."""
    settings: Settings
    """The validated configuration: images, mode, valkey, port, memory plan, retention, emails, paths."""
    secrets: GlitchTipSecrets
    """SECRET_KEY and the passwords."""


class GlitchTipStack(pulumi.ComponentResource):
    """compose.yaml + .env on the server, `docker compose up --wait`, health gate, superuser.

    `depends_on` given in opts is passed on to the remote step (pulumi-traps 9).
    """

    url: pulumi.Output[str]
    """GlitchTip as the server itself reaches it (http://127.0.0.1:PORT)."""
    version: pulumi.Output[str]
    """The version the running GlitchTip reports (/api/settings/)."""
    admin_email: pulumi.Output[str]
    """The superuser's email."""
    admin_password: pulumi.Output[str]
    """The superuser's password (secret)."""
    secret_key: pulumi.Output[str]
    """GlitchTip's SECRET_KEY (secret)."""
    compose_project: pulumi.Output[str]
    """The compose project name (`docker compose -p glitchtip ...`)."""
    install_dir: pulumi.Output[str]
    """Directory on the server holding compose.yaml and .env."""
    compose_yaml: pulumi.Output[str]
    """The rendered compose.yaml (no secrets)."""
    images: pulumi.Output[dict]
    """The digest-pinned image of each component: glitchtip, postgres[, valkey][, caddy][, relay]."""
    containers: pulumi.Output[dict]
    """Container id of each running service after the deploy."""
    deploy: remote.Command
    """The deploy step: depend on it for anything that needs GlitchTip up (and its admin)."""

    def __init__(self, name: str, args: GlitchTipStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("glitchtip:index:GlitchTipStack", name, None, opts)
        settings = args.settings
        depends_on = component_depends_on(opts)

        images: dict[str, pulumi.Output[str]] = {
            "glitchtip": pinned_image(
                settings.glitchtip_image, DEFAULT_IMAGES["glitchtip"].format(version=settings.glitchtip_version), self
            ),
            "postgres": pinned_image(settings.postgres_image, DEFAULT_IMAGES["postgres"], self),
        }
        if settings.valkey:
            images["valkey"] = pinned_image(settings.valkey_image, DEFAULT_IMAGES["valkey"], self)
        if settings.exposure == "tls":
            images["caddy"] = pinned_image(settings.caddy_image, DEFAULT_IMAGES["caddy"], self)
        if settings.dsn_target == "dual":
            images["relay"] = pinned_image(settings.relay_image, DEFAULT_IMAGES["relay"], self)
        self.images = pulumi.Output.all(**images)
        self.compose_yaml = self.images.apply(lambda refs: render_compose(ComposeSpec.from_settings(settings, Images(**refs))))

        email_url = settings.smtp_url if settings.smtp_url is not None else pulumi.Output.from_input("consolemail://")
        env_text = pulumi.Output.all(args.secrets.secret_key, args.secrets.postgres_password, email_url).apply(
            lambda v: render_env(env_values(*v))
        )
        stdin = pulumi.Output.secret(
            pulumi.Output.all(env_text, args.secrets.admin_password).apply(lambda v: render_stdin(*v))
        )
        step = self.compose_yaml.apply(
            lambda text: Step(
                "deploy-stack.sh",
                (
                    settings.install_dir,
                    PROJECT,
                    str(settings.glitchtip_port),
                    str(WAIT_SECONDS),
                    settings.admin_email,
                    "adopt" if settings.adopt_postgres_password else "fail",
                    text,
                ),
            )
        )
        self.deploy = run_script(
            f"{name}-deploy",
            step,
            connection=args.connection,
            parent=self,
            stdin=stdin,
            delete=Step(
                "teardown-stack.sh",
                (settings.install_dir, PROJECT, "delete" if settings.delete_data_on_destroy else "keep"),
            ),
            secret=True,  # reads secrets on stdin: nothing logged, output stored encrypted
            depends_on=depends_on,
        )
        # The script prints only non-secret key=value results; take those out of the secret stdout.
        results = pulumi.Output.unsecret(self.deploy.stdout).apply(parse_results)
        self.version = results.apply(lambda r: r.get("version", ""))
        self.containers = results.apply(
            lambda r: {k.split(".", 1)[1]: v for k, v in r.items() if k.startswith("container.")}
        )
        self.url = pulumi.Output.from_input(settings.glitchtip_url)
        self.admin_email = pulumi.Output.from_input(settings.admin_email)
        self.admin_password = args.secrets.admin_password
        self.secret_key = args.secrets.secret_key
        self.compose_project = pulumi.Output.from_input(PROJECT)
        self.install_dir = pulumi.Output.from_input(settings.install_dir)
        self.register_outputs(
            {
                "url": self.url,
                "version": self.version,
                "admin_email": self.admin_email,
                "admin_password": self.admin_password,
                "compose_project": self.compose_project,
                "install_dir": self.install_dir,
                "compose_yaml": self.compose_yaml,
                "images": self.images,
                "containers": self.containers,
            }
        )
