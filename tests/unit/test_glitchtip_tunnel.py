"""The SSH tunnel against an in-process paramiko SSH server on loopback (direct-tcpip only)."""

from __future__ import annotations

import io
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko
import pytest

from components.glitchtip.tunnel import SshTarget, TunnelError, load_private_key, open_tunnel, parse_host_key
from tests.standins.glitchtip.server import StandIn


def _key_text(key: paramiko.PKey) -> str:
    out = io.StringIO()
    key.write_private_key(out)
    return out.getvalue()


def _public_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()} test@example.com"


class _Server(paramiko.ServerInterface):
    def __init__(self, allowed: paramiko.PKey) -> None:
        self.allowed = allowed

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "deploy" and key.get_base64() == self.allowed.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple, destination: tuple) -> int:
        return paramiko.OPEN_SUCCEEDED if destination[0] == "127.0.0.1" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


@dataclass
class FakeSshd:
    port: int
    host_key: paramiko.PKey
    client_key: paramiko.PKey


def _forward(channel: paramiko.Channel, destination: tuple[str, int]) -> None:
    from components.glitchtip.tunnel import _pump

    try:
        sock = socket.create_connection(destination, timeout=5)
    except OSError:
        channel.close()
        return
    _pump(sock, channel)


@pytest.fixture()
def sshd() -> Iterator[FakeSshd]:
    host_key, client_key = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.3)
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            transports.append(transport)
            destinations: dict[int, tuple[str, int]] = {}

            class Recording(_Server):
                def check_channel_direct_tcpip_request(self, chanid, origin, destination):  # type: ignore[no-untyped-def]
                    destinations[chanid] = destination
                    return super().check_channel_direct_tcpip_request(chanid, origin, destination)

            try:
                transport.start_server(server=Recording(client_key))
            except (paramiko.SSHException, EOFError):
                continue

            def channels(t: paramiko.Transport = transport) -> None:
                while t.is_active() and not stop.is_set():
                    channel = t.accept(timeout=0.3)
                    if channel is not None:
                        threading.Thread(target=_forward, args=(channel, destinations[channel.get_id()]), daemon=True).start()

            threading.Thread(target=channels, daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield FakeSshd(listener.getsockname()[1], host_key, client_key)
    stop.set()
    listener.close()
    for transport in transports:
        transport.close()
    thread.join(timeout=2)


def _target(sshd: FakeSshd, host_key: paramiko.PKey | None = None) -> SshTarget:
    return SshTarget(
        host="127.0.0.1",
        port=sshd.port,
        user="deploy",
        host_key=_public_line(host_key or sshd.host_key),
        private_key=_key_text(sshd.client_key),
    )


def test_tunnel_reaches_a_loopback_port_on_the_server(sshd: FakeSshd) -> None:
    with StandIn() as standin, open_tunnel(_target(sshd), int(standin.url.rsplit(":", 1)[1]), timeout=5) as base:
        assert base.startswith("http://127.0.0.1:") and base != standin.url
        for _ in range(3):  # several connections through one SSH session
            assert urllib.request.urlopen(base + "/_health/", timeout=5).read() == b"ok"


def test_wrong_host_key_is_refused(sshd: FakeSshd) -> None:
    impostor = paramiko.ECDSAKey.generate()
    with pytest.raises(TunnelError, match="not the pinned one"):
        with open_tunnel(_target(sshd, host_key=impostor), 8000, timeout=5):
            pass


def test_host_key_of_another_type_is_refused(sshd: FakeSshd) -> None:
    other = paramiko.RSAKey.generate(1024)
    with pytest.raises(TunnelError, match="refusing to connect"):
        with open_tunnel(_target(sshd, host_key=other), 8000, timeout=5):
            pass


def test_unknown_client_key_is_refused(sshd: FakeSshd) -> None:
    target = _target(sshd)
    stranger = SshTarget(host=target.host, port=target.port, user="deploy", host_key=target.host_key,
                         private_key=_key_text(paramiko.ECDSAKey.generate()))
    with pytest.raises(TunnelError, match="failed"):
        with open_tunnel(stranger, 8000, timeout=5):
            pass


def test_key_parsing_errors_are_clear_and_keep_the_key_out_of_repr() -> None:
    with pytest.raises(TunnelError, match="one line"):
        parse_host_key("AAAAC3NzaC1lZDI1NTE5AAAAIG")
    with pytest.raises(TunnelError, match="cannot be parsed"):
        parse_host_key("ssh-ed25519 not-base64!!")
    with pytest.raises(TunnelError, match="not an OpenSSH/PEM"):
        load_private_key("-----BEGIN NOTHING-----\nabc\n-----END NOTHING-----")
    text = _key_text(paramiko.ECDSAKey.generate())
    assert load_private_key(text).get_name().startswith("ecdsa-sha2")
    assert text not in repr(SshTarget(host="h", host_key="ssh-ed25519 AAAA", private_key=text))


def test_unreachable_server_is_a_tunnel_error() -> None:
    key = paramiko.ECDSAKey.generate()
    target = SshTarget(host="127.0.0.1", port=9, host_key=_public_line(key), private_key=_key_text(key))
    with pytest.raises(TunnelError, match="cannot reach"):
        with open_tunnel(target, 8000, timeout=2):
            pass
