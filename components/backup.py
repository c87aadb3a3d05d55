"""BackupJob: nightly, checksummed GlitchTip backups that are proven to restore.

One remote step (components/remote/install-backup.sh) installs, under
`${installDir}`:

- `bin/backup.sh`: lock (flock), free-space check against the last set, `pg_dump -Fc`
  in the same snapshot as the manifest's row counts, the uploads volume and the config
  (compose.yaml, .env) into `backupDir/glitchtip-<UTC time>`, written under a temporary
  name and renamed only when complete; sha256 checksums, a manifest, modes 0600/0700;
  retention of its own regular sets; the optional off-site command; the heartbeat ping;
- `bin/restore.sh`: `--verify [SET]` restores into a throwaway Postgres container with no
  network and compares row counts with the manifest; `--confirm SET` restores for real;
- `backup.conf` (0600): paths, retention, and the secret-ish values (heartbeat URL,
  off-site command), which reach the server on stdin only;
- `/etc/cron.d/glitchtip-backup` from `backupSchedule`, output appended to the log.

The installed scripts are self-contained files (lib.sh + backup-lib.sh + the script).
Every installed file is an argument of install-backup.sh, so the command string (shown in
the preview, read by the policy pack's backup-configured rule) holds the schedule and the
retention even when the secret stdin is not known yet (a heartbeat URL from a monitor
created in the same update); an edited script or schedule is an update that re-installs
it. Only the heartbeat URL and the off-site command travel on stdin.

On destroy (BackupJob goes before the stack it depends on) the delete step takes a final
backup labelled `-final` (never removed by retention) while GlitchTip still runs, then
removes the cron entry, scripts and config; the backup sets and the log stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from .remote import LIB, Step, component_depends_on, run_script, script_text
from .settings import ConfigError, Settings, check_cron, cron_hours

CRON_FILE = "/etc/cron.d/glitchtip-backup"
"""cron.d entry; cron ignores names with dots, so none here."""
LOG_FILE = "/var/log/glitchtip-backup.log"
"""Where the scheduled runs append their output (backup.sh rotates it at 1 MiB, 4 kept)."""
CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHARED = "backup-lib.sh"
MAINTENANCE_HOUR = 5
"""GlitchTip's daily maintenance (retention cleanup) runs at 05:00: backups keep away from it."""


def installed_script(name: str) -> str:
    """The file installed on the server for components/remote/NAME: lib.sh, backup-lib.sh, NAME."""
    return (
        f"{script_text(LIB)}\n# ---- {SHARED} ----\n{script_text(SHARED)}"
        f"\n# ---- {name} ----\n{script_text(name)}"
    )


@dataclass(frozen=True)
class BackupJobArgs:
    """Inputs of BackupJob."""

    connection: pulumi.Input[remote.ConnectionArgs]
    """The verified SSH connection (components.remote.connection_args)."""
    install_dir: str
    """The stack's directory on the server; the scripts go to its bin/, backup.conf beside compose.yaml."""
    backup_dir: str
    """Where the sets are written (created 0700)."""
    schedule: str
    """Five-field cron schedule (settings.check_cron validates it again here)."""
    retention_days: int
    """Regular sets older than this many days are removed after each successful backup."""
    glitchtip_version: str
    """Recorded in each manifest; a real restore refuses a set from a newer GlitchTip."""
    glitchtip_port: int
    """GlitchTip on the server's 127.0.0.1: the real restore's health check."""
    delete_data_on_destroy: bool = False
    """With deleteDataOnDestroy a failed final backup stops the destroy; otherwise it only warns."""
    offsite_command: pulumi.Input[str] | None = None
    """Optional command run after each successful backup with the set's path as $1 (may hold credentials)."""
    heartbeat_url: pulumi.Input[str] | None = None
    """Optional URL POSTed after each successful backup (a GlitchTip heartbeat monitor); secret-ish."""
    cron_file: str = CRON_FILE
    """The cron.d entry."""
    log_file: str = LOG_FILE
    """The log the cron entry appends to."""

    def __post_init__(self) -> None:
        check_cron("backupSchedule", self.schedule)
        if not 1 <= self.retention_days <= 3650:
            raise ConfigError("Config key 'backupRetentionDays' must be between 1 and 3650 days.")
        for value in (self.install_dir, self.backup_dir, self.cron_file, self.log_file):
            if not value.startswith("/") or any(c in value for c in "% \n\t\"'\\$`"):
                raise ValueError(f"{value!r} must be an absolute path without spaces, quotes, '%' or '$'")
        if "." in self.cron_file.rsplit("/", 1)[-1]:
            raise ValueError(f"{self.cron_file}: cron ignores cron.d files whose names contain a dot")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        connection: pulumi.Input[remote.ConnectionArgs],
        heartbeat_url: pulumi.Input[str] | None = None,
    ) -> BackupJobArgs:
        return cls(
            connection=connection,
            install_dir=settings.install_dir,
            backup_dir=settings.backup_dir,
            schedule=settings.backup_schedule,
            retention_days=settings.backup_retention_days,
            glitchtip_version=settings.glitchtip_version,
            glitchtip_port=settings.glitchtip_port,
            delete_data_on_destroy=settings.delete_data_on_destroy,
            offsite_command=settings.backup_offsite_command,
            heartbeat_url=heartbeat_url,
        )

    @property
    def backup_script(self) -> str:
        return f"{self.install_dir}/bin/backup.sh"

    @property
    def restore_script(self) -> str:
        return f"{self.install_dir}/bin/restore.sh"

    @property
    def config_file(self) -> str:
        return f"{self.install_dir}/backup.conf"


def render_cron(args: BackupJobArgs) -> str:
    """The cron.d file: root runs backup.sh on the schedule, output appended to the log.

    No '%' anywhere (cron turns it into a newline), PATH set (cron's default lacks
    /usr/local/bin and /sbin), no mail (the log is the record).
    """
    line = f"{args.schedule} root {args.backup_script} --config {args.config_file} >>{args.log_file} 2>&1"
    text = (
        f"# {args.cron_file}: GlitchTip's scheduled backup, installed by glitchtip-migration (pulumi).\n"
        "# Edit backupSchedule and run `pulumi up` instead of this file.\n"
        "SHELL=/bin/bash\n"
        f"PATH={CRON_PATH}\n"
        'MAILTO=""\n'
        f"{line}\n"
    )
    assert "%" not in text, "cron turns '%' into a newline"
    return text


def render_config(args: BackupJobArgs) -> str:
    """backup.conf without its secret lines (those come from stdin): KEY=VALUE, parsed, never sourced."""
    values = {
        "INSTALL_DIR": args.install_dir,
        "BACKUP_DIR": args.backup_dir,
        "RETENTION_DAYS": str(args.retention_days),
        "GLITCHTIP_VERSION": args.glitchtip_version,
        "GLITCHTIP_PORT": str(args.glitchtip_port),
        "LOG_FILE": args.log_file,
    }
    header = "# GlitchTip backups (backup.sh, restore.sh), written by glitchtip-migration (pulumi). Mode 0600.\n"
    return header + "".join(f"{key}={value}\n" for key, value in values.items())


def installed_files(args: BackupJobArgs) -> dict[str, str]:
    """The non-secret files install-backup.sh writes, in the order of its arguments."""
    return {
        "CONF": render_config(args),
        "CRON": render_cron(args),
        "BACKUP_SH": installed_script("backup.sh"),
        "RESTORE_SH": installed_script("restore.sh"),
    }


def install_step(args: BackupJobArgs) -> Step:
    """install-backup.sh INSTALL_DIR BACKUP_DIR CRON_FILE LOG_FILE CONF CRON BACKUP_SH RESTORE_SH (file texts)."""
    return Step(
        "install-backup.sh",
        (args.install_dir, args.backup_dir, args.cron_file, args.log_file, *installed_files(args).values()),
    )


def render_stdin(heartbeat_url: str | None, offsite_command: str | None) -> str:
    """install-backup.sh's stdin: backup.conf's secret lines, nothing else."""
    lines = []
    for key, value in (("HEARTBEAT_URL", heartbeat_url), ("OFFSITE_COMMAND", offsite_command)):
        value = (value or "").strip()
        if any(c in value for c in "\n\r\x00"):
            raise ValueError(f"{key} must be a single line")
        lines.append(f"{key}={value}\n")
    return "".join(lines)


class BackupJob(pulumi.ComponentResource):
    """backup.sh + restore.sh + backup.conf + the cron.d entry on the server; a final backup on destroy.

    `depends_on` given in opts (the stack) is passed on to the remote step (pulumi-traps 9).
    """

    backup_dir: pulumi.Output[str]
    """Where the sets are."""
    backup_script: pulumi.Output[str]
    """The installed backup.sh (`--final` labels a set that retention never removes)."""
    restore_script: pulumi.Output[str]
    """The installed restore.sh (`--verify [SET]`, `--confirm SET`, `--list`)."""
    cron_file: pulumi.Output[str]
    """The cron.d entry."""

    def __init__(self, name: str, args: BackupJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("glitchtip:index:BackupJob", name, None, opts)
        hours = cron_hours(args.schedule)
        if hours is None or MAINTENANCE_HOUR in hours:
            pulumi.log.warn(
                f"backupSchedule '{args.schedule}' runs during GlitchTip's 05:00 maintenance; a quieter hour such as 02:00 is better.",
                resource=self,
            )
        stdin = pulumi.Output.secret(
            pulumi.Output.all(args.heartbeat_url, args.offsite_command).apply(lambda v: render_stdin(*v))
        )
        self.install = run_script(
            f"{name}-install",
            # the files are arguments: any change is an update, and the preview shows it
            install_step(args),
            connection=args.connection,
            parent=self,
            stdin=stdin,
            delete=Step(
                "uninstall-backup.sh",
                (args.install_dir, args.cron_file, "delete" if args.delete_data_on_destroy else "keep"),
            ),
            secret=True,  # reads the heartbeat URL and the off-site command on stdin
            depends_on=component_depends_on(opts),
        )
        self.backup_dir = pulumi.Output.from_input(args.backup_dir)
        self.backup_script = pulumi.Output.from_input(args.backup_script)
        self.restore_script = pulumi.Output.from_input(args.restore_script)
        self.cron_file = pulumi.Output.from_input(args.cron_file)
        self.register_outputs(
            {
                "backup_dir": self.backup_dir,
                "backup_script": self.backup_script,
                "restore_script": self.restore_script,
                "cron_file": self.cron_file,
            }
        )
