"""Exposure: how people reach GlitchTip's UI, an SSH tunnel (default) or Caddy terminating TLS.

- `exposure: tunnel`: nothing is public. GlitchTip listens on the server's 127.0.0.1 only;
  the `uiTunnel` output is the `ssh -N -L` command that brings the UI to the operator's
  laptop, and the app on the same server keeps using the 127.0.0.1 DSN.
- `exposure: tls`: a Caddy service joins the compose project (`add_to_compose`, called
  by components/stack.py's render_compose). It alone publishes 80 and 443, gets
  certificates for `domain` (ACME, or Caddy's internal CA with tlsInternal), redirects
  HTTP to HTTPS and proxies to GlitchTip over a compose network of its own with a fixed
  subnet, so that GlitchTip trusts forwarded headers from the proxy's address only.
  The Caddyfile is rendered here and written by components/remote/install-proxy.sh
  (nothing secret in it), after a preflight: ports 80/443 free, the subnet unused, and a
  warning with the fix when `domain` does not resolve to the server yet.
- `firewall: true`: components/remote/firewall.sh adds ufw rules for SSH (and 80/443
  with tls), enables ufw only if it was off and only once SSH is allowed, and on destroy
  takes back exactly the rules it added. Docker-published ports bypass ufw: that is
  why GlitchTip itself is published on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from .remote import Step, component_depends_on, run_script
from .settings import Settings

SERVICE = "caddy"
"""The compose service running the proxy."""
NETWORK = "proxy"
"""The compose network between Caddy and GlitchTip (`glitchtip_proxy` on the server)."""
DATA_VOLUME = "caddy-data"
"""Named volume holding certificates and ACME account keys (Caddy's /data): kept across deploys."""
CADDYFILE = "Caddyfile"
"""File name of the rendered config in installDir, mounted read-only at /etc/caddy/Caddyfile."""
DEFAULT_IMAGE = "caddy:2.11"  # an exact minor: a new 2.x minor is a deliberate change
"""Resolved to its digest at preview when caddyImage is empty."""
UPSTREAM_PORT = 8000
CADDYFILE_LABEL = "glitchtip-migration.caddyfile-sha256"
"""A label on the Caddy container: a new Caddyfile changes it, so compose recreates Caddy."""
HSTS_SECONDS = 31536000
"""One year; without includeSubDomains, so the domain's siblings are not affected."""
MAX_BODY = "20MB"
"""Largest request accepted: GlitchTip caps an unzipped event at 5 MB; envelopes with
attachments (which GlitchTip drops) can be larger and must not make the event be lost."""
REQUEST_BUFFER = "256KB"
"""Request bodies up to this size are read whole and sent on with a Content-Length
(@sentry/node sends chunked bodies); bigger ones stream. Small on purpose: @sentry/node
keeps up to 64 requests in flight and Caddy's container has 64 MiB."""
LOCAL_TUNNEL_PORT = 8000
"""The port on the operator's machine that `uiTunnel` forwards."""
FIREWALL_TAG = "glitchtip-migration"
"""The comment on every ufw rule firewall.sh adds; only rules with it are ever removed."""


# ---------------------------------------------------------------------------- pure rendering


@dataclass(frozen=True)
class ProxySpec:
    """Everything the TLS proxy is made from. Holds no secret."""

    domain: str
    """The public DNS name Caddy serves and gets a certificate for."""
    upstream_service: str
    """The compose service serving GlitchTip's HTTP: glitchtip (all-in-one) or web (split)."""
    acme_email: str
    """The ACME account email (expiry notices from the CA)."""
    tls_internal: bool
    """Use Caddy's internal CA instead of ACME (rehearsal and tests: no public DNS needed)."""
    subnet: str
    """IPv4 subnet of the proxy network; Caddy takes its second address."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ProxySpec:
        return cls(
            domain=settings.domain,
            upstream_service="glitchtip" if settings.server_mode == "all-in-one" else "web",
            acme_email=settings.acme_email,
            tls_internal=settings.tls_internal,
            subnet=settings.proxy_subnet,
        )

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def proxy_address(self) -> str:
        """Caddy's fixed address: the one GlitchTip trusts forwarded headers from."""
        return str(self.network[2])

    @property
    def dynamic_range(self) -> str:
        """Where Docker may hand out addresses to other containers (the upper half: never Caddy's)."""
        return str(list(self.network.subnets(prefixlen_diff=1))[1])

    @property
    def public_url(self) -> str:
        return f"https://{self.domain}"


def render_caddyfile(spec: ProxySpec) -> str:
    """The Caddyfile for the spec. Pure: same spec, same bytes."""
    globals_ = [f"\temail {spec.acme_email}"]
    if spec.tls_internal:
        globals_.append("\tskip_install_trust")  # the CA stays in caddy-data; nothing touches a trust store
    lines = [
        "# Caddy in front of GlitchTip, written by glitchtip-migration (pulumi): edits are overwritten.",
        "{",
        *globals_,
        "\tservers {",
        "\t\tprotocols h1 h2",  # only 80/tcp and 443/tcp are published: no HTTP/3 over UDP
        "\t\ttimeouts {",
        "\t\t\tread_header 30s",
        "\t\t\tread_body 2m",  # bounds a slow upload that request buffering would hold
        "\t\t\tidle 5m",
        "\t\t}",
        "\t}",
        "}",
        "",
        f"{spec.domain} {{",
    ]
    if spec.tls_internal:
        lines.append("\ttls internal")
    lines += [
        "\trequest_body {",
        f"\t\tmax_size {MAX_BODY}",
        "\t}",
        f"\treverse_proxy {spec.upstream_service}:{UPSTREAM_PORT} {{",
        f"\t\trequest_buffers {REQUEST_BUFFER}",
        f'\t\theader_down Strict-Transport-Security "max-age={HSTS_SECONDS}"',
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def caddyfile_sha256(spec: ProxySpec) -> str:
    return hashlib.sha256(render_caddyfile(spec).encode()).hexdigest()


def glitchtip_environment(spec: ProxySpec) -> dict[str, str]:
    """What GlitchTip needs behind the proxy (GLITCHTIP_DOMAIN comes from settings.public_url)."""
    return {
        "SESSION_COOKIE_SECURE": "True",
        "CSRF_COOKIE_SECURE": "True",
        "SECURE_HSTS_SECONDS": str(HSTS_SECONDS),
        "CSRF_TRUSTED_ORIGINS": spec.public_url,
        "TRUSTED_PROXIES": spec.proxy_address,
    }


GLITCHTIP_SERVICES = ("glitchtip", "migrate", "web", "worker")
"""Compose services that run GlitchTip's code (whichever of them the stack has)."""


def add_to_compose(document: dict, spec: ProxySpec, image: str | None, limit_mb: int) -> None:
    """Add Caddy, its network and volume to a compose document (components/stack.py's render_compose)."""
    if not image:
        raise ValueError("exposure is tls but no Caddy image was given")
    services = document["services"]
    if spec.upstream_service not in services:
        raise ValueError(f"the proxy's upstream service {spec.upstream_service!r} is not in the compose file")
    for name in GLITCHTIP_SERVICES:
        if name in services:
            services[name]["environment"] = {**services[name]["environment"], **glitchtip_environment(spec)}
    services[spec.upstream_service]["networks"] = ["default", NETWORK]
    services[SERVICE] = {
        "image": image,
        "restart": "unless-stopped",
        "depends_on": {spec.upstream_service: {"condition": "service_healthy"}},
        # The only ports published beyond 127.0.0.1.
        "ports": ["80:80", "443:443"],
        "volumes": [f"./{CADDYFILE}:/etc/caddy/Caddyfile:ro", f"{DATA_VOLUME}:/data"],
        "networks": {NETWORK: {"ipv4_address": spec.proxy_address}},
        "labels": {CADDYFILE_LABEL: caddyfile_sha256(spec)},
        # Go's GC keeps the heap under this, well inside the container's limit.
        "environment": {"GOMEMLIMIT": f"{max(16, limit_mb * 3 // 4)}MiB"},
        "healthcheck": {  # the admin API answers on the container's loopback once Caddy runs
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", "-T", "5", "http://127.0.0.1:2019/config/"],
            "interval": "10s",  # Docker's first check waits one interval: `up --wait` waits that long
            "timeout": "5s",
            "retries": 3,
            "start_period": "30s",
        },
        "mem_limit": f"{limit_mb}m",
        "memswap_limit": f"{limit_mb}m",
    }
    document.setdefault("networks", {})[NETWORK] = {
        "ipam": {"config": [{"subnet": spec.subnet, "ip_range": spec.dynamic_range}]},
    }
    document.setdefault("volumes", {})[DATA_VOLUME] = {}


def tunnel_command(user: str, host: str, ssh_port: int, glitchtip_port: int) -> str:
    """The SSH command that forwards the operator's LOCAL_TUNNEL_PORT to GlitchTip on the server."""
    target = f"{user}@{host}"
    return f"ssh -N -L {LOCAL_TUNNEL_PORT}:127.0.0.1:{glitchtip_port} {shlex.quote(target)} -p {ssh_port}"


def ui_tunnel(settings: Settings) -> dict[str, str]:
    """The `uiTunnel` output: the command to run, and the URL to open while it runs."""
    return {
        "command": tunnel_command(settings.ssh_user, settings.host, settings.ssh_port, settings.glitchtip_port),
        "url": f"http://127.0.0.1:{LOCAL_TUNNEL_PORT}/",
    }


def firewall_ports(settings: Settings) -> tuple[str, ...]:
    """TCP ports firewall.sh allows: SSH first (it must be allowed before ufw is enabled)."""
    ports = [str(settings.ssh_port)]
    if settings.exposure == "tls":
        ports += ["80", "443"]
    return tuple(ports)


def parse_results(stdout: str) -> dict[str, str]:
    results = {}
    for line in (stdout or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            results[key] = value.strip()
    return results


# ---------------------------------------------------------------------------- the component


@dataclass(frozen=True)
class ExposureArgs:
    """Inputs of Exposure."""

    connection: pulumi.Input[remote.ConnectionArgs]
    """The verified SSH connection (components.remote.connection_args)."""
    settings: Settings
    """The validated configuration: exposure, domain, acmeEmail, tlsInternal, proxySubnet, firewall, SSH and GlitchTip ports."""


class Exposure(pulumi.ComponentResource):
    """The way to the UI: the tunnel command, the TLS proxy's Caddyfile and preflight, the optional ufw rules.

    The stack's deploy step must depend on this component: the Caddyfile has to be on
    the server before compose starts Caddy (components/stack.py mounts it).
    """

    ui_tunnel: pulumi.Output[dict]
    """{command, url}: `ssh -N -L 8000:127.0.0.1:<glitchtipPort> <user>@<host> -p <port>` and the local URL."""
    ui_url: pulumi.Output[str]
    """Where people open the UI: https://domain with tls, else the tunnel's local URL."""
    dns: pulumi.Output[str]
    """With tls: ok | elsewhere | unresolved (whether `domain` resolves to this server); else n/a."""
    firewall: pulumi.Output[str]
    """With firewall=true: the ufw rules this stack owns; else off."""
    steps: list[remote.Command]
    """The remote steps (proxy preflight + Caddyfile, ufw rules): what the deploy depends on."""

    def __init__(self, name: str, args: ExposureArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("glitchtip:index:Exposure", name, None, opts)
        settings = args.settings
        depends_on = component_depends_on(opts)
        self.steps = []
        self.ui_tunnel = pulumi.Output.from_input(ui_tunnel(settings))
        self.dns = pulumi.Output.from_input("n/a")
        self.firewall = pulumi.Output.from_input("off")
        if settings.exposure == "tls":
            spec = ProxySpec.from_settings(settings)
            self.ui_url = pulumi.Output.from_input(spec.public_url)
            proxy = run_script(
                f"{name}-proxy",
                Step(
                    "install-proxy.sh",
                    (settings.install_dir, spec.domain, settings.host, spec.subnet, render_caddyfile(spec)),
                ),
                connection=args.connection,
                parent=self,
                delete=Step("uninstall-proxy.sh", (settings.install_dir,)),
                depends_on=depends_on,
            )
            self.steps.append(proxy)
            self.dns = proxy.stdout.apply(lambda out: parse_results(out).get("dns", "unknown"))
        else:
            self.ui_url = self.ui_tunnel.apply(lambda t: t["url"])
        if settings.firewall:
            ports = firewall_ports(settings)
            rules = run_script(
                f"{name}-firewall",
                Step("firewall.sh", ("apply", *ports)),
                connection=args.connection,
                parent=self,
                delete=Step("firewall.sh", ("remove",)),
                depends_on=depends_on,
            )
            self.steps.append(rules)
            self.firewall = rules.stdout.apply(lambda out: parse_results(out).get("rules", "unknown"))
        self.register_outputs(
            {"ui_tunnel": self.ui_tunnel, "ui_url": self.ui_url, "dns": self.dns, "firewall": self.firewall}
        )
