"""GlitchTip on the app's VPS: preflight, install, deploy, provision, back up, cut over."""

import pulumi

from components.app_dsn import AppDsn, AppDsnArgs
from components.backup import BackupJob, BackupJobArgs
from components.docker_host import DockerHost, DockerHostArgs
from components.glitchtip.provisioning import AlertSpec, GlitchTipProject, GlitchTipProjectArgs, MonitorSpec
from components.glitchtip.resources import AlertRecipient, ApiAccess
from components.proxy import Exposure, ExposureArgs
from components.relay import Relay, RelayArgs
from components.remote import connection_args
from components.secrets import GlitchTipSecrets
from components.settings import Settings
from components.stack import GlitchTipStack, GlitchTipStackArgs, relay_spec

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

exposure = Exposure(  # the UI over an SSH tunnel, or Caddy on 80/443 (its Caddyfile before the deploy); ufw
    "ui",
    ExposureArgs(connection=connection, settings=settings),
    opts=pulumi.ResourceOptions(depends_on=[host]),
)
secrets = GlitchTipSecrets("glitchtip")  # generated once, kept in state; never regenerated casually
stack = GlitchTipStack(
    "glitchtip",
    GlitchTipStackArgs(connection=connection, settings=settings, secrets=secrets),
    opts=pulumi.ResourceOptions(depends_on=[host, exposure]),
)
project = GlitchTipProject(  # the runbook's clicks in the UI: token, org, team, project + DSN, alerts, monitors
    "glitchtip",
    GlitchTipProjectArgs(
        access=ApiAccess(  # GlitchTip listens on the server's 127.0.0.1: reached through an SSH tunnel
            remote_port=settings.glitchtip_port,
            ssh_host=settings.host,
            ssh_port=settings.ssh_port,
            ssh_user=settings.ssh_user,
            ssh_host_key=settings.ssh_host_key,
            ssh_private_key=settings.ssh_private_key,
        ),
        admin_email=stack.admin_email,
        admin_password=stack.admin_password,
        org_name=settings.organization_name,
        team_slug=settings.team_slug,
        project_name=settings.project_name,
        platform=settings.project_platform,
        public_url=settings.public_url if settings.exposure == "tls" else None,
        alerts=[
            AlertSpec(
                name=rule.name,
                quantity=rule.quantity,
                timespan_minutes=rule.minutes,
                recipients=(AlertRecipient("email"),)
                + ((AlertRecipient("webhook", settings.alert_webhook_url),) if settings.alert_webhook_url else ()),
            )
            for rule in settings.alerts
        ],
        monitors=[MonitorSpec(name=name, url=url) for name, url in settings.uptime_monitors],
    ),
    opts=pulumi.ResourceOptions(depends_on=[stack]),
)
backup = BackupJob(  # nightly sets, restore-checked, heartbeat to GlitchTip; on destroy a final set before the stack goes
    "glitchtip-backup",
    BackupJobArgs.from_settings(settings, connection, heartbeat_url=project.heartbeat_url),
    opts=pulumi.ResourceOptions(depends_on=[stack]),
)
relay = None
if settings.dsn_target == "dual":  # the parallel run: every envelope to Sentry SaaS, a byte-identical copy to GlitchTip
    relay = Relay(
        "relay",
        RelayArgs(
            connection=connection,
            install_dir=settings.install_dir,
            spec=relay_spec(settings),
            image=stack.images.apply(lambda refs: refs["relay"]),
            memory_limit_mb=settings.memory_limits_mb["relay"],
            sentry_dsn=settings.sentry_dsn,
            glitchtip_dsn=settings.glitchtip_dsn or project.dsn,
            depends_on=[stack, project],
        ),
    )
app_dsn = AppDsn(  # the cutover: dsnTarget flips the app's SENTRY_DSN; destroy puts the original back first
    "app-dsn",
    AppDsnArgs(
        connection=connection,
        env_file=settings.app_env_file,
        target=settings.dsn_target,
        sentry_dsn=settings.sentry_dsn,
        glitchtip_dsn=settings.glitchtip_dsn or project.dsn,  # the glitchtipDsn override, else the provisioned project's
        api_token=project.api_token,  # the gate finds its test event through the API
        glitchtip_url=settings.glitchtip_url,
        pm2_apps=settings.app_pm2_apps,
        restart_command=settings.app_restart_command,
        relay_port=settings.relay_port,
        depends_on=[stack, *([relay] if relay else [])],
    ),
)

pulumi.export("dsnTarget", app_dsn.target)
pulumi.export("docker", host.ready)
pulumi.export("glitchtipUrl", stack.url)
pulumi.export("uiTunnel", exposure.ui_tunnel)  # {command: ssh -N -L 8000:127.0.0.1:PORT user@host -p N, url}
pulumi.export("uiUrl", exposure.ui_url)  # https://domain with exposure=tls, else the tunnel's local URL
pulumi.export("glitchtipVersion", stack.version)
pulumi.export("glitchtipImages", stack.images)  # the digests in use: a new one shows in preview
pulumi.export("adminEmail", stack.admin_email)
pulumi.export("adminPassword", stack.admin_password)  # secret: `pulumi stack output adminPassword --show-secrets`
pulumi.export("glitchtipDsn", project.dsn)  # secret; the cutover target
pulumi.export("glitchtipProjectId", project.project_id)
pulumi.export("glitchtipOrg", settings.organization_name)
pulumi.export("glitchtipProject", settings.project_name)
pulumi.export("glitchtipApiToken", project.api_token)  # secret; scripts/verify_capture.py and status.py use it
pulumi.export("backupDir", backup.backup_dir)
pulumi.export("restoreScript", backup.restore_script)  # scripts/restore_drill.py runs it with --verify
