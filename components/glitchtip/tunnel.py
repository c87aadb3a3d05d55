"""An SSH tunnel to a port on the server's loopback, over a VERIFIED connection.

GlitchTip publishes its port on 127.0.0.1 only; the Pulumi providers and operator
scripts reach it through a paramiko `direct-tcpip` channel. The server's host key is
pinned from an authorized_keys-format line (`ssh-ed25519 AAAA... comment`) and any
other key is refused (RejectPolicy, no known_hosts file, no agent, no ~/.ssh keys).

    with open_tunnel(target, remote_port=8000) as base_url:   # http://127.0.0.1:<ephemeral>
        GlitchTipClient(base_url, token).organizations()
"""

from __future__ import annotations

import base64
import binascii
import io
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paramiko

_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


class TunnelError(Exception):
    """The tunnel could not be opened (bad key text, host key mismatch, refused login, unreachable)."""


@dataclass(frozen=True)
class SshTarget:
    """How to reach the server: address, login, pinned host key, private key text."""

    host: str
    host_key: str
    """The server's public host key, one authorized_keys-format line."""
    private_key: str = field(repr=False)
    """The client's private key (OpenSSH or PEM text). Never printed."""
    user: str = "root"
    port: int = 22
    passphrase: str | None = field(default=None, repr=False)


def parse_host_key(line: str) -> paramiko.PKey:
    """Parse `<type> <base64> [comment]` (options before the type are not accepted)."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise TunnelError("the host key must be one line '<type> <base64> [comment]'.")
    key_type, blob = parts[0], parts[1]
    try:
        data = base64.b64decode(blob, validate=True)
        key = paramiko.PKey.from_type_string(key_type, data)
    except (binascii.Error, ValueError, paramiko.SSHException) as exc:
        raise TunnelError(f"the host key of type {key_type!r} cannot be parsed: {type(exc).__name__}.") from None
    if key.get_name() != key_type and not key_type.startswith(key.get_name().split("-cert")[0]):
        raise TunnelError(f"the host key says {key_type!r} but holds a {key.get_name()!r} key.")
    return key


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """Load an Ed25519, ECDSA or RSA private key from its text."""
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text.strip() + "\n"), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise TunnelError("the private key is encrypted and no passphrase was given.") from None
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    raise TunnelError("the private key is not an OpenSSH/PEM Ed25519, ECDSA or RSA key.")


def connect(target: SshTarget, *, timeout: float = 15.0) -> paramiko.SSHClient:
    """An SSHClient connected to `target` after verifying its host key against the pinned one."""
    host_key = parse_host_key(target.host_key)
    pkey = load_private_key(target.private_key, target.passphrase)
    client = paramiko.SSHClient()
    entry = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    client.get_host_keys().add(entry, host_key.get_name(), host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            pkey=pkey,
            allow_agent=False,
            look_for_keys=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except paramiko.BadHostKeyException:
        client.close()
        raise TunnelError(f"{target.host}:{target.port} presented a host key that is not the pinned one; refusing to connect.") from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise TunnelError(f"{target.host}:{target.port} offered no host key of the pinned type; refusing to connect.") from None
        raise TunnelError(f"SSH to {target.user}@{target.host}:{target.port} failed: {exc}.") from None
    except OSError as exc:
        client.close()
        raise TunnelError(f"cannot reach {target.host}:{target.port}: {exc.strerror or exc}.") from None
    return client


def _pump(sock: socket.socket, channel: paramiko.Channel) -> None:
    try:
        while True:
            readable, _, _ = select.select([sock, channel], [], [], 1.0)
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    break
                sock.sendall(data)
    except OSError:
        pass
    finally:
        channel.close()
        sock.close()


@contextmanager
def open_tunnel(
    target: SshTarget, remote_port: int, *, remote_host: str = "127.0.0.1", timeout: float = 15.0
) -> Iterator[str]:
    """Yield `http://127.0.0.1:<ephemeral>` forwarding to remote_host:remote_port on the server."""
    client = connect(target, timeout=timeout)
    transport = client.get_transport()
    assert transport is not None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.5)
    stopping = threading.Event()

    def accept_loop() -> None:
        while not stopping.is_set():
            try:
                sock, peer = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                channel = transport.open_channel("direct-tcpip", (remote_host, remote_port), peer, timeout=timeout)
            except (paramiko.SSHException, OSError):
                sock.close()  # the client sees a reset connection: nothing listens on the remote port
                continue
            threading.Thread(target=_pump, args=(sock, channel), daemon=True).start()

    acceptor = threading.Thread(target=accept_loop, name="ssh-tunnel-accept", daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        listener.close()
        acceptor.join(timeout=2)
        client.close()
