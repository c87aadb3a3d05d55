"""AppDsn: the app's SENTRY_DSN as a resource, so cutover and rollback are one config flip.

One remote step (components/remote/set-dsn.sh) points the SENTRY_DSN line(s) of the app's
dotenv file at the target's DSN and restarts the app so it takes effect; `pulumi destroy`
runs components/remote/restore-dsn.sh, which puts the original line(s) back byte for byte
and restarts the app again. The rules it follows (shared/pulumi-traps.md):

- The target is an argument of the script, so it is in clear text in the command string:
  `pulumi config set dsnTarget glitchtip` + `pulumi preview` shows this one resource
  updating, `... sentry ...` -> `... glitchtip ...` in its diff (traps 1, 2: no `triggers`,
  so the change is an UPDATE running the same idempotent script, never a replace whose
  create-before-delete would run the restore afterwards).
- The DSNs (and the API token) reach the script on stdin, a secret input; nothing secret is
  ever in a command string, and the step logs nothing (trap 4).
- The restore is the `delete` stored in state: destroy runs it without the program (trap 6),
  with the connection stored there. It needs nothing but what is on the server.
- Before pointing the app at GlitchTip the script gates on GlitchTip's /_health/ and on a
  test event acknowledged by ingest (and found through the API when a token is given).
- It depends on the GlitchTip stack (args.depends_on, passed on to the step: trap 9), so
  destroy restores the app's DSN before the stack is taken down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from .relay import relay_dsn
from .remote import Step, component_depends_on, run_script
from .settings import DSN_TARGETS, ConfigError


@dataclass(frozen=True)
class AppDsnArgs:
    """Inputs of AppDsn."""

    connection: pulumi.Input[remote.ConnectionArgs]
    """The verified SSH connection (components.remote.connection_args)."""
    env_file: str
    """The app's dotenv file on the server (appEnvFile)."""
    target: str
    """Where the app reports: sentry | glitchtip | dual (dsnTarget; dual: the relay on 127.0.0.1:relay_port)."""
    sentry_dsn: pulumi.Input[str]
    """The app's Sentry DSN (secret): the rollback target, and what the app must use before the first apply."""
    glitchtip_dsn: pulumi.Input[str] | None
    """The DSN the app reports to GlitchTip with (secret): the provisioned project's DSN, or the
    glitchtipDsn override. It may point at 127.0.0.1:glitchtipPort when the app shares the host.
    Required when target is glitchtip."""
    glitchtip_url: str
    """GlitchTip as the server itself reaches it (Settings.glitchtip_url): the gate's health and API checks."""
    api_token: pulumi.Input[str] | None = None
    """A GlitchTip API token (secret). With one, the gate also finds the test event through the API."""
    pm2_apps: tuple[str, ...] = ()
    """PM2 process names to restart (appPm2Apps); empty: every PM2 process whose cwd is the env file's directory."""
    restart_command: str = ""
    """A command that replaces the PM2 restart (appRestartCommand), run in the env file's directory."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What must be up before the DSN may point at GlitchTip, and outlive the restore on destroy: the GlitchTip stack
    (and, with dual, the relay)."""
    relay_port: int = 9010
    """relayPort: with target dual the app's DSN is http://<SAAS_KEY>@127.0.0.1:<relay_port>/<SAAS_PROJECT_ID>."""

    def __post_init__(self) -> None:
        if self.target not in DSN_TARGETS:
            raise ConfigError(f"Config key 'dsnTarget' must be one of {', '.join(DSN_TARGETS)}; set it with `pulumi config set dsnTarget sentry`.")
        if self.target in ("glitchtip", "dual") and self.glitchtip_dsn is None:
            raise ConfigError(
                "Config key 'glitchtipDsn' is required while dsnTarget is glitchtip and no provisioned project provides the DSN;"
                " set it with `pulumi config set --secret glitchtipDsn http://KEY@127.0.0.1:8000/1`."
            )


def render_stdin(dsn: str, sentry_dsn: str, api_token: str | None = None, glitchtip_dsn: str | None = None) -> str:
    """What set-dsn.sh reads on stdin: DSN=, SENTRY_DSN= and optionally API_TOKEN= and (dual) GLITCHTIP_DSN= lines."""
    if not dsn or not sentry_dsn:
        raise ValueError(f"set-dsn.sh needs {'the target DSN' if not dsn else 'the Sentry DSN'}: the value is empty")
    fields = {"DSN": dsn, "SENTRY_DSN": sentry_dsn, "API_TOKEN": api_token or "", "GLITCHTIP_DSN": glitchtip_dsn or ""}
    for key, value in fields.items():
        if re.search(r"[\s\x00]", value):
            raise ValueError(f"{key} for set-dsn.sh must be one line without blanks")
    return "".join(f"{key}={value}\n" for key, value in fields.items() if value)


def parse_results(stdout: str) -> dict[str, str]:
    """set-dsn.sh's `key=value` results (target, changed, restarted, gate, event, visible)."""
    return dict(token.split("=", 1) for token in (stdout or "").split() if re.fullmatch(r"[a-z]+=\S*", token))


class AppDsn(pulumi.ComponentResource):
    """The app's SENTRY_DSN line: points at Sentry or GlitchTip; destroy puts the original back.

    `depends_on` given in args or in opts is passed on to the remote step (pulumi-traps 9).
    """

    target: pulumi.Output[str]
    """Where the app reports now: sentry | glitchtip."""
    results: pulumi.Output[dict]
    """What the last apply did: changed (yes|no), restarted (process names), and the gate's test event."""
    step: remote.Command
    """The remote step (create/update: set-dsn.sh; delete: restore-dsn.sh)."""

    def __init__(self, name: str, args: AppDsnArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("glitchtip:index:AppDsn", name, None, opts)
        depends_on = [*args.depends_on, *component_depends_on(opts)]
        apps = ",".join(args.pm2_apps)
        # Both targets take the same inputs, so a flip changes this step's values, never its graph.
        target, port = args.target, args.relay_port

        def stdin_for(v: list) -> str:
            if target == "glitchtip":
                return render_stdin(v[0], v[1], v[2])
            if target == "dual":  # the relay's DSN; the gate proves both paths (GlitchTip's key first)
                return render_stdin(relay_dsn(v[1], port), v[1], v[2], v[0])
            return render_stdin(v[1], v[1])

        stdin = pulumi.Output.all(args.glitchtip_dsn, args.sentry_dsn, args.api_token).apply(stdin_for)
        self.step = run_script(
            f"{name}-set",
            Step("set-dsn.sh", (args.env_file, args.target, args.glitchtip_url, apps, args.restart_command)),
            connection=args.connection,
            parent=self,
            stdin=pulumi.Output.secret(stdin),
            delete=Step("restore-dsn.sh", (args.env_file, apps, args.restart_command)),
            secret=True,  # reads the DSNs on stdin: nothing logged, output stored encrypted
            depends_on=depends_on,
        )
        self.target = pulumi.Output.from_input(args.target)
        # The script prints only non-secret key=value results.
        self.results = pulumi.Output.unsecret(self.step.stdout).apply(parse_results)
        self.register_outputs({"target": self.target, "results": self.results})
