"""DockerHost: the server made ready for GlitchTip (preflight, then Docker Engine + compose)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from .remote import Step, run_script

# What the server needs beyond GlitchTip's own memory: the OS and the app it already runs.
HEADROOM_MB = 512
MIN_DISK_GB = 10


@dataclass(frozen=True)
class DockerHostArgs:
    """Inputs of DockerHost."""

    connection: pulumi.Input[remote.ConnectionArgs]
    """The verified SSH connection (components.remote.connection_args)."""
    glitchtip_port: int
    """The port GlitchTip will publish on 127.0.0.1; it must be free or already ours."""
    memory_budget_mb: int
    """GlitchTip's memory budget; the server needs this plus HEADROOM_MB of RAM."""
    docker_version: str
    """Docker Engine release to install from Docker's apt repository (e.g. 28.5.2)."""
    uninstall_on_destroy: bool = False
    """Remove Docker Engine on destroy (it stays by default)."""


class DockerHost(pulumi.ComponentResource):
    """Preflight checks, then Docker Engine and the compose plugin from Docker's apt repository.

    Idempotent: with Docker and the compose plugin already present the install is
    skipped and only daemon.json (log rotation, live-restore) is merged.
    """

    ready: pulumi.Output[str]

    def __init__(self, name: str, args: DockerHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("glitchtip:index:DockerHost", name, None, opts)
        self.preflight = run_script(
            f"{name}-preflight",
            Step(
                "preflight.sh",
                (str(args.glitchtip_port), str(args.memory_budget_mb + HEADROOM_MB), str(MIN_DISK_GB)),
            ),
            connection=args.connection,
            parent=self,
        )
        self.install = run_script(
            f"{name}-docker",
            Step("install-docker.sh", (args.docker_version,)),
            connection=args.connection,
            parent=self,
            delete=Step("uninstall-docker.sh") if args.uninstall_on_destroy else None,
            depends_on=[self.preflight],
        )
        self.ready = self.install.stdout
        self.register_outputs({"ready": self.ready})
