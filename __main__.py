"""GlitchTip on the app's VPS: preflight, install, deploy, provision, back up, cut over."""

import pulumi

from components.docker_host import DockerHost, DockerHostArgs
from components.remote import connection_args
from components.settings import Settings

settings = Settings.load()  # every config error is one clear sentence, before any resource
connection = connection_args(
    host=settings.host,
    port=settings.ssh_port,
    user=settings.ssh_user,
    host_key=settings.ssh_host_key,
    private_key=settings.ssh_private_key,
)

host = DockerHost(
    "vps",
    DockerHostArgs(
        connection=connection,
        glitchtip_port=settings.glitchtip_port,
        memory_budget_mb=settings.memory_budget_mb,
        docker_version=settings.docker_version,
        uninstall_on_destroy=settings.uninstall_docker_on_destroy,
    ),
)

pulumi.export("dsnTarget", settings.dsn_target)
pulumi.export("docker", host.ready)
