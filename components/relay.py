"""Relay: the parallel run (dsnTarget=dual) without touching the app's code.

The app's DSN points at an nginx relay on the server's 127.0.0.1:relayPort
(`http://<SAAS_KEY>@127.0.0.1:<relayPort>/<SAAS_PROJECT_ID>`). nginx forwards every
envelope unchanged to Sentry SaaS (the primary: its answer, rate limits included, is
what the SDK sees) and mirrors a byte-identical copy to GlitchTip with the project id
swapped in the path and the key swapped where the key already is (query `sentry_key=`
or the X-Sentry-Auth header's `sentry_key=`, never added to the other place). The
measured pitfalls (shared/dual-reporting.md) are handled in the rendered config:
keepalive_timeout 0, short mirror timeouts, client_max_body_size 20m, SNI + certificate
check against the CA bundle for SaaS, worker_connections 8192, and an access log with
the status of the main request (and its upstream) and of every mirror copy.

- nginx from a digest-pinned image, not Debian's nginx on the host: nothing installed on the
  host beyond Docker, a cgroup memory limit and a restart policy like the stack's containers,
  GlitchTip reached by its service name, and no trace left when dual ends.
- The relay is a compose project of its own (`glitchtip-relay`, in installDir/relay), not
  a service of the stack's `glitchtip` project: the stack's deploy (`up --remove-orphans`)
  never touches it, so when dsnTarget leaves dual the relay still runs while AppDsn points
  the app away from it, and only then is it removed (Pulumi deletes a resource dropped
  from the program after updating the rest). Its compose file (`render_compose`: pinned,
  memory-limited with the share settings.memory_plan always reserves, 127.0.0.1:relayPort only)
  holds no secret and travels as install-relay.sh's last argument, where the policy
  pack's compose rules read it; it joins the stack's network (`glitchtip_default`,
  external) to reach GlitchTip by its service name.
- The config holds both DSNs' keys, so it is secret: rendered here, it reaches the server
  on stdin (base64) and components/remote/install-relay.sh writes it 0600 and starts the
  project. No key is ever in a command string.
- The Relay resource exists only while dsnTarget is dual: leaving dual deletes it
  (components/remote/uninstall-relay.sh removes the container, its compose file and config).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import yaml
from pulumi_command import remote

from .remote import Step, run_script
from .settings import is_ip

SERVICE = "relay"
"""The compose service running nginx."""
PROJECT = "glitchtip-relay"
"""The relay's own compose project: the stack's deploy (`--remove-orphans`) never removes it."""
SUBDIR = "relay"
"""installDir/relay holds the relay project's compose.yaml and its config."""
CONF = "nginx.conf"
"""File name of the rendered config in installDir/relay (0600), mounted at /etc/nginx/nginx.conf."""
STACK_NETWORK = "glitchtip_default"
"""The stack's compose network (project glitchtip's default), joined as external to reach GlitchTip."""
DEFAULT_IMAGE = "nginx:1.29"
"""Resolved to its digest at preview when relayImage is empty."""
DOCKER_DNS = "127.0.0.11"
"""Docker's embedded DNS in a compose network. Both upstreams are reached through variables, so
nginx resolves their names when needed, not once at start: GlitchTip's service name (a recreated
container has a new address; a stopped one has none, and a literal name would keep nginx from
starting at all) and SaaS's host name (its addresses change)."""
DNS_VALID = "10s"
"""How long nginx keeps an answer: a recreated GlitchTip is reached again within seconds."""
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""Debian's CA bundle (the nginx image is Debian-based): checks SaaS's certificate."""
MIRROR_TIMEOUTS = {"connect": "2s", "send": "5s", "read": "5s"}
"""A hung GlitchTip must not stall the app's next request (dual-reporting.md)."""
MAX_BODY = "20m"
WORKER_CONNECTIONS = 8192
"""Each pending copy holds two connections."""
LOG_PREFIX = "relay"
"""Every access-log line starts `relay main ...` or `relay mirror ...` (scripts/parallel_report.py)."""


@dataclass(frozen=True)
class Dsn:
    """The parts of a DSN the relay needs."""

    scheme: str
    host: str
    """host[:port] as in the DSN."""
    prefix: str
    """The path before the project id ("" for SaaS)."""
    key: str
    project_id: str

    @classmethod
    def parse(cls, dsn: str) -> Dsn:
        parts = urlsplit(dsn.strip())
        prefix, _, project_id = parts.path.rstrip("/").rpartition("/")
        if parts.scheme not in ("http", "https") or not parts.username or not project_id.isdigit() or not parts.hostname:
            raise ValueError("not a DSN like https://KEY@HOST/PROJECT_ID")
        for value in (parts.username, prefix, parts.netloc):
            if re.search(r"[\s;{}'\"\\$#]", value):
                raise ValueError("the DSN holds characters nginx's config cannot take literally")
        return cls(parts.scheme, parts.netloc.rpartition("@")[2], prefix, parts.username, project_id)


def relay_dsn(sentry_dsn: str, port: int) -> str:
    """The app's DSN during the parallel run: SaaS's key and project id, the relay's address."""
    saas = Dsn.parse(sentry_dsn)
    return f"http://{saas.key}@127.0.0.1:{port}/{saas.project_id}"


@dataclass(frozen=True)
class RelaySpec:
    """Everything the relay's compose service is made from. Holds no secret."""

    port: int
    """relayPort: published on 127.0.0.1 only; nginx listens on the same port in the container."""
    upstream_service: str
    """The compose service serving GlitchTip's HTTP: glitchtip (all-in-one) or web (split)."""
    glitchtip_port: int
    """glitchtipPort: the Host header of the copies, as if the app had sent them itself."""


GLITCHTIP_CONTAINER_PORT = 8000


def render_conf(spec: RelaySpec, sentry_dsn: str, glitchtip_dsn: str) -> str:
    """nginx.conf for the relay. Pure; holds both keys: secret."""
    saas, mirror = Dsn.parse(sentry_dsn), Dsn.parse(glitchtip_dsn)
    saas_pass = f"{saas.scheme}://{saas.host}{saas.prefix}/" if saas.prefix else f"{saas.scheme}://{saas.host}"
    # A name in a literal proxy_pass is resolved once, at start (and nginx does not start when
    # DNS fails); through a variable it is resolved by Docker's DNS when needed (DNS_VALID).
    # An IP, or a DSN with a path prefix, stays literal.
    by_name = not saas.prefix and not is_ip(urlsplit(f"//{saas.host}").hostname or "")
    tls = saas.scheme == "https"
    pid = re.escape(saas.project_id)
    lines = [
        "# The dual-reporting relay (dsnTarget=dual), written by glitchtip-migration (pulumi): edits are overwritten.",
        "# Holds Sentry's and GlitchTip's DSN keys: mode 0600.",
        "worker_processes 1;",
        f"worker_rlimit_nofile {WORKER_CONNECTIONS * 2 + 1024};",
        "pid /tmp/nginx-relay.pid;",
        "error_log stderr crit;  # error lines quote the request line, key included: keep them out of the logs",
        "events {",
        f"    worker_connections {WORKER_CONNECTIONS};",
        "}",
        "http {",
        "    server_tokens off;",
        f"    client_max_body_size {MAX_BODY};",
        "    client_body_buffer_size 256k;",
        "    log_subrequest on;  # the mirror's copies are logged by their own location",
        # Never the request URI or headers: they carry the key.
        f"    log_format relay_main '{LOG_PREFIX} main $time_iso8601 $request_method $uri $status $upstream_status $request_length $request_time';",
        f"    log_format relay_mirror '{LOG_PREFIX} mirror $time_iso8601 $request_method $relay_path $status $upstream_status $request_length $request_time';",
        "    access_log off;",
        "    # The copy's URI: GlitchTip's project id in the path, its key where SaaS's key is in the query.",
        "    map $relay_uri $mirror_uri {",
        f'        "~^/api/{pid}/(?<m_rest>[^?]*)\\?(?<m_pre>(?:[^?]*&)?)sentry_key=[^&]*(?<m_post>.*)$" "/api/{mirror.project_id}/${{m_rest}}?${{m_pre}}sentry_key={mirror.key}${{m_post}}";',
        f'        "~^/api/{pid}/(?<m_path>.*)$" "/api/{mirror.project_id}/${{m_path}}";',
        '        default "";',
        "    }",
        "    # ... and in X-Sentry-Auth when the key is there (never added where it was not).",
        "    map $http_x_sentry_auth $mirror_auth {",
        f'        "~^(?<a_pre>(?:.*[\\s,])?)sentry_key=[^,\\s]*(?<a_post>.*)$" "${{a_pre}}sentry_key={mirror.key}${{a_post}}";',
        "        default $http_x_sentry_auth;",
        "    }",
        "    # Names are looked up when used (the mirror's proxy_pass holds a variable; so does SaaS's when by name).",
        f"    resolver {DOCKER_DNS} valid={DNS_VALID} ipv6=off;",
        "    resolver_timeout 2s;",
        "    server {",
        f"        listen {spec.port};",
        "        keepalive_timeout 0;  # a slow copy must not stall the client's next request",
        "        location = /_relay/health {",
        "            access_log off;",
        "            return 200 'ok';",
        "        }",
        "        location / {",
        "            access_log /dev/stdout relay_main;",
        "            set $relay_uri $request_uri;",
        "            set $relay_path $uri;",
        "            mirror /_relay_mirror;",
        "            mirror_request_body on;",
        *([f'            set $saas_upstream "{saas_pass}";', "            proxy_pass $saas_upstream;"]
          if by_name else [f"            proxy_pass {saas_pass};"]),
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_connect_timeout 10s;",
        "            proxy_send_timeout 30s;",
        "            proxy_read_timeout 30s;",
    ]
    if tls:
        lines += [
            "            proxy_ssl_server_name on;",
            "            proxy_ssl_verify on;",
            "            proxy_ssl_verify_depth 4;",
            f"            proxy_ssl_trusted_certificate {CA_BUNDLE};",
        ]
    lines += [
        "        }",
        "        location = /_relay_mirror {",
        "            internal;",
        "            access_log /dev/stdout relay_mirror;",
        '            if ($mirror_uri = "") {',
        "                return 204;  # not an ingest request for SaaS's project: nothing to copy",
        "            }",
        f"            proxy_pass http://{spec.upstream_service}:{GLITCHTIP_CONTAINER_PORT}$mirror_uri;",
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        f"            proxy_set_header Host 127.0.0.1:{spec.glitchtip_port};",
        "            proxy_set_header X-Sentry-Auth $mirror_auth;",
        f"            proxy_connect_timeout {MIRROR_TIMEOUTS['connect']};",
        f"            proxy_send_timeout {MIRROR_TIMEOUTS['send']};",
        f"            proxy_read_timeout {MIRROR_TIMEOUTS['read']};",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_compose(spec: RelaySpec, image: str | None, limit_mb: int) -> str:
    """compose.yaml of the relay's own project (installDir/relay). Holds no secret."""
    if not image:
        raise ValueError("dsnTarget is dual but no relay image was given")
    document = {
        "name": PROJECT,
        "services": {
            SERVICE: {
                "image": image,
                "restart": "unless-stopped",
                "ports": [f"127.0.0.1:{spec.port}:{spec.port}"],
                "volumes": [f"./{CONF}:/etc/nginx/nginx.conf:ro"],
                "networks": [STACK_NETWORK],
                "mem_limit": f"{limit_mb}m",
                "memswap_limit": f"{limit_mb}m",
            }
        },
        "networks": {STACK_NETWORK: {"external": True, "name": STACK_NETWORK}},
        # Its share of memoryBudgetMb (settings.memory_plan); the stack's compose.yaml carries the rest.
        "x-memory-budget-mb": limit_mb,
    }
    header = (
        "# The dual-reporting relay (dsnTarget=dual), written by glitchtip-migration (pulumi): edits are overwritten.\n"
        f"# Its own compose project ({PROJECT}); nginx.conf (0600) next to this file holds the DSN keys.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)


def render_stdin(conf: str) -> str:
    """What install-relay.sh reads on stdin: CONF_B64=<nginx.conf, base64>."""
    return f"CONF_B64={base64.b64encode(conf.encode()).decode()}\n"


@dataclass(frozen=True)
class RelayArgs:
    """Inputs of Relay."""

    connection: pulumi.Input[remote.ConnectionArgs]
    """The verified SSH connection (components.remote.connection_args)."""
    install_dir: str
    """installDir: the relay's project goes to installDir/relay."""
    spec: RelaySpec
    """Port, GlitchTip's service and port."""
    image: pulumi.Input[str]
    """The digest-pinned nginx image: a new one changes the relay's compose file and re-runs the step."""
    memory_limit_mb: int
    """The relay's share of memoryBudgetMb (settings.memory_limits_mb["relay"])."""
    sentry_dsn: pulumi.Input[str]
    """sentryDsn (secret): where every envelope goes."""
    glitchtip_dsn: pulumi.Input[str]
    """The GlitchTip project's DSN (secret): where the copies go."""
    depends_on: Sequence[pulumi.Resource] = ()
    """The stack's deploy (its network must exist; GlitchTip must answer) and the project."""


class Relay(pulumi.ComponentResource):
    """The relay's compose project on the server (config 0600) and its running container; delete removes them."""

    url: pulumi.Output[str]
    """The relay as the app reaches it (http://127.0.0.1:PORT)."""
    step: remote.Command

    def __init__(self, name: str, args: RelayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("glitchtip:index:Relay", name, None, opts)
        conf = pulumi.Output.all(args.sentry_dsn, args.glitchtip_dsn).apply(lambda v: render_conf(args.spec, v[0], v[1]))
        directory = f"{args.install_dir.rstrip('/')}/{SUBDIR}"
        step = pulumi.Output.from_input(args.image).apply(
            lambda image: Step(
                "install-relay.sh",
                (directory, PROJECT, str(args.spec.port), render_compose(args.spec, image, args.memory_limit_mb)),
            )
        )
        self.step = run_script(
            f"{name}-install",
            step,
            connection=args.connection,
            parent=self,
            stdin=pulumi.Output.secret(conf.apply(render_stdin)),
            delete=Step("uninstall-relay.sh", (directory, PROJECT)),
            secret=True,  # reads the keys on stdin: nothing logged, output stored encrypted
            depends_on=list(args.depends_on),
        )
        self.url = pulumi.Output.from_input(f"http://127.0.0.1:{args.spec.port}")
        self.register_outputs({"url": self.url})
