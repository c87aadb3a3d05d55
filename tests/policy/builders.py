"""Props builders for the policy specs (pulumi-policy-aws style): a happy resource of each
shape the program registers, made with the program's own renderers, so that each spec
changes one thing and expects one exact message.

Shapes: a remote Command (create/update rendered by components.remote.render_script,
stdin, logging, connection), the deploy step (compose.yaml as its last argument, .env on
stdin), the backup install (backup.conf and the cron entry as arguments), set-dsn.sh,
install-docker.sh, and pulumi-random secrets.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from components import backup as backup_component
from components import proxy as proxy_component
from components.remote import bundle, render_script
from components.settings import memory_plan
from components.stack import ComposeSpec, Images, env_values, render_compose, render_env
from tests import harness
from tests.policy.support import Resource

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""The engine's unknown-string sentinel (pulumi_policy.proxy.UNKNOWN_STRING_VALUE)."""
HOST = "203.0.113.10"
HOST_KEY = harness.TEST_HOST_KEY
PRIVATE_KEY = harness.TEST_PRIVATE_KEY
SECRET_KEY = "5e" * 32
POSTGRES_PASSWORD = "PgPassw0rdAbcdefGhijklmnopQRSTuv"
ADMIN_PASSWORD = "AdminPassw0rdXyz12345678"
SMTP_URL = "smtp+tls://mailer:SmtpPassw0rdXyz@smtp.example.com:587"
SENTRY_DSN = harness.SENTRY_DSN
GLITCHTIP_DSN = harness.GLITCHTIP_DSN
DOMAIN = "glitchtip.example.com"
SECRETS = (SECRET_KEY, POSTGRES_PASSWORD, ADMIN_PASSWORD, SMTP_URL, SENTRY_DSN, GLITCHTIP_DSN, PRIVATE_KEY)
"""Every secret a builder uses: no violation message may contain any of them."""


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


IMAGES = Images(
    glitchtip=f"glitchtip/glitchtip:6.2.6@{digest('glitchtip')}",
    postgres=f"postgres:18@{digest('postgres')}",
    valkey=f"valkey/valkey:8@{digest('valkey')}",
)
CADDY_IMAGE = f"caddy:2@{digest('caddy')}"


def connection(**overrides: Any) -> dict[str, Any]:
    """A pulumi-command connection as components.remote.connection_args builds it."""
    value = {
        "host": HOST,
        "port": 22,
        "user": "root",
        "hostKey": HOST_KEY,
        "privateKey": PRIVATE_KEY,
        "dialErrorLimit": 5,
        "perDialTimeout": 15,
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not None}


def command(
    name: str,
    script: str,
    args: Sequence[str] = (),
    *,
    stdin: str | None = None,
    secret: bool | None = None,
    create: str | None = None,
    delete: str | None = None,
    conn: dict[str, Any] | None = None,
    dependencies: Sequence[str] = (),
    **props: Any,
) -> Resource:
    """A remote Command as components.remote.run_script registers it."""
    secret = stdin is not None if secret is None else secret
    rendered = create if create is not None else render_script(script, args)
    inputs: dict[str, Any] = {
        "connection": conn if conn is not None else connection(),
        "create": rendered,
        "update": rendered,
        "addPreviousOutputInEnv": False,
        "logging": "none" if secret else "stdoutAndStderr",
    }
    if delete is not None:
        inputs["delete"] = delete
    if stdin is not None:
        inputs["stdin"] = stdin
    inputs.update(props)
    return Resource(
        type="command:remote:Command",
        name=name,
        props={k: v for k, v in inputs.items() if v is not None},
        dependencies=list(dependencies),
        additional_secret_outputs=["stdout", "stderr"] if secret else [],
    )


def custom_command(script: str, program: str, args: Sequence[str]) -> str:
    """A command string of render_script's shape around another PROGRAM (a tampered script)."""
    quoted = " ".join(shlex.quote(a) for a in (script, *args))
    return f"# glitchtip-migration: {script}\nbash -c {shlex.quote(program)} {quoted}"


# ---------------------------------------------------------------------------- deploy


def compose_document(
    *,
    server_mode: str = "all-in-one",
    valkey: bool = False,
    tls: bool = False,
    budget: int = 1024,
    declare_budget: bool = True,
) -> dict[str, Any]:
    """compose.yaml as components/stack.py renders it (limits from the program's memory plan, the
    budget declared as x-memory-budget-mb unless declare_budget is False), parsed."""
    limits = memory_plan(server_mode, valkey, "tls" if tls else "tunnel", budget)
    spec = ComposeSpec(
        images=IMAGES,
        server_mode=server_mode,
        valkey=valkey,
        port=8000,
        public_url=f"https://{DOMAIN}" if tls else "http://127.0.0.1:8000",
        from_email="admin@example.com",
        retention_days=90,
        memory_limits_mb=limits,
        memory_budget_mb=budget if declare_budget else None,
    )
    document = yaml.safe_load(render_compose(spec))
    if tls and "caddy" not in document["services"]:
        proxy = proxy_component.ProxySpec(
            domain=DOMAIN,
            upstream_service="glitchtip" if server_mode == "all-in-one" else "web",
            acme_email="admin@example.com",
            tls_internal=False,
            subnet="172.30.99.0/24",
        )
        proxy_component.add_to_compose(document, proxy, CADDY_IMAGE, limits["caddy"])
    return document


def env_text(**overrides: str) -> str:
    """.env as components/stack.py renders it (EMAIL_URL with an SMTP password)."""
    values = env_values(SECRET_KEY, POSTGRES_PASSWORD, SMTP_URL)
    values.update(overrides)
    return render_env(values)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def deploy(
    document: dict[str, Any] | None = None,
    *,
    compose_text: str | None = None,
    compose_in: str = "args",
    env: str | None = None,
    stdin: str | None = None,
    name: str = "glitchtip-deploy",
    dependencies: Sequence[str] = (),
    mutate: Callable[[dict[str, Any]], None] | None = None,
    **props: Any,
) -> Resource:
    """The deploy step: compose.yaml as the last argument (or, compose_in='stdin', as older
    renders carried it: COMPOSE_B64 on stdin), .env and the admin password on stdin."""
    document = copy.deepcopy(document) if document is not None else compose_document()
    if mutate:
        mutate(document)
    text = compose_text if compose_text is not None else yaml.safe_dump(document, sort_keys=False)
    args = ["/opt/glitchtip", "glitchtip", "8000", "600", "admin@example.com", "fail"]
    if stdin is None:
        stdin = f"ENV_B64={b64(env if env is not None else env_text())}\nADMIN_PASSWORD={ADMIN_PASSWORD}\n"
        if compose_in == "stdin":
            stdin = f"COMPOSE_B64={b64(text)}\n" + stdin
    if compose_in == "args":
        args.append(text)
    else:
        args.append(hashlib.sha256(text.encode()).hexdigest())
    return command(
        name,
        "deploy-stack.sh",
        args,
        stdin=stdin,
        delete=render_script("teardown-stack.sh", ["/opt/glitchtip", "glitchtip", "keep"]),
        dependencies=dependencies,
        **props,
    )


# ---------------------------------------------------------------------------- backup, docker, DSN, randoms


def backup(
    *,
    schedule: str = "0 2 * * *",
    retention: int = 30,
    name: str = "glitchtip-backup-install",
    conn: dict[str, Any] | None = None,
    stdin: str | None = None,
    replace: dict[str, str] | None = None,
    dependencies: Sequence[str] = (),
) -> Resource:
    """The install-backup.sh step as components/backup.py registers it (the files as arguments,
    the heartbeat URL on stdin); `replace` swaps a file's text (CONF, CRON, BACKUP_SH, RESTORE_SH)."""
    args = backup_component.BackupJobArgs(
        connection={},
        install_dir="/opt/glitchtip",
        backup_dir="/var/backups/glitchtip",
        schedule=schedule,
        retention_days=retention,
        glitchtip_version="6.2.6",
        glitchtip_port=8000,
    )
    if stdin is None:
        stdin = backup_component.render_stdin("https://glitchtip.example.com/api/0/heartbeat/abcdef", None)
    step_args = list(backup_component.install_step(args).args)  # 4 paths, then the files in this order
    order = list(backup_component.installed_files(args))
    for key, text in (replace or {}).items():
        step_args[4 + order.index(key)] = text
    return command(
        name,
        "install-backup.sh",
        step_args,
        stdin=stdin,
        conn=conn,
        delete=render_script("uninstall-backup.sh", [args.install_dir, args.cron_file, "keep"]),
        dependencies=dependencies,
    )


def docker(version: str | None = "28.5.2", name: str = "vps-docker") -> Resource:
    return command(name, "install-docker.sh", [version] if version is not None else [])


def set_dsn(
    target: str = "glitchtip",
    *,
    url: str = "http://127.0.0.1:8000",
    dsn: str | None = GLITCHTIP_DSN,
    stdin: str | None = None,
    dependencies: Sequence[str] = (),
    create: str | None = None,
    name: str = "app-dsn-set",
) -> Resource:
    """set-dsn.sh: ENV_FILE TARGET GLITCHTIP_URL PM2_APPS RESTART_COMMAND; DSNs on stdin."""
    args = ["/opt/ai-admin/.env", target, url, "ai-admin-api", ""]
    if stdin is None:
        lines = ([f"DSN={dsn}"] if dsn is not None else []) + [f"SENTRY_DSN={SENTRY_DSN}"]
        stdin = "\n".join(lines) + "\n"
    return command(
        name,
        "set-dsn.sh",
        args,
        stdin=stdin,
        create=create,
        delete=render_script("restore-dsn.sh", ["/opt/ai-admin/.env", "ai-admin-api", ""]),
        dependencies=dependencies,
    )


def set_dsn_program_without_gate() -> str:
    """set-dsn.sh's bundle with its gate taken out (the tampering the rule guards against)."""
    program = bundle("set-dsn.sh")
    assert '[ "$target" = sentry ] || gate "$glitchtip_url"' in program
    return program.replace('[ "$target" = sentry ] || gate "$glitchtip_url"', ":")


def random_password(name: str, result: str | None) -> Resource:
    props: dict[str, Any] = {"length": 32, "special": False}
    outputs = dict(props, result=result) if result is not None else dict(props, result=UNKNOWN)
    return Resource(type="random:index/randomPassword:RandomPassword", name=name, props=props, outputs=outputs)


def random_bytes(name: str, hex_value: str | None) -> Resource:
    props: dict[str, Any] = {"length": 32}
    outputs = dict(props, hex=hex_value if hex_value is not None else UNKNOWN, base64=UNKNOWN if hex_value is None else "c2VjcmV0")
    return Resource(type="random:index/randomBytes:RandomBytes", name=name, props=props, outputs=outputs)


def stack(**parts: Resource | None) -> list[Resource]:
    """A happy stack: Docker, the secrets, the deploy, the backup (override or drop any part by name)."""
    resources: dict[str, Resource | None] = {
        "docker": docker(),
        "secret_key": random_bytes("glitchtip-secret-key", SECRET_KEY),
        "postgres_password": random_password("glitchtip-postgres-password", POSTGRES_PASSWORD),
        "admin_password": random_password("glitchtip-admin-password", ADMIN_PASSWORD),
        "deploy": deploy(),
        "backup": None,
    }
    resources["backup"] = backup(dependencies=[resources["deploy"].urn])  # type: ignore[union-attr]
    resources.update(parts)
    return [r for r in resources.values() if r is not None]
