"""The whole pack over the program's own resources (tests/harness.py under mocks).

Modes (tests/policy/support.py): `up` (every value known), `preview` (an existing
stack's preview) and `fresh-preview` (the first preview: generated secrets, command
outputs and everything made from them unknown, as the engine shows them). The shipped
stacks must pass every rule in every mode with nothing skipped; deliberately broken
configurations and resource lists must produce exactly the expected violations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from components.remote import parse_command, render_script
from tests import harness
from tests.policy import builders
from tests.policy.support import MODES, Resource, program_resources, run_pack


def staging_config(**overrides: Any) -> dict[str, Any]:
    """Pulumi.staging.yaml plus what an operator sets by hand (host key, key, DSN)."""
    config = harness.stack_config("staging")
    config.update(sshHostKey=harness.TEST_HOST_KEY, sshPrivateKey=harness.TEST_PRIVATE_KEY, sentryDsn=harness.SENTRY_DSN)
    config.update(overrides)
    return config


# The one value no preview can know: the DSN of a GlitchTip project this update creates
# (dynamic-provider outputs are unknown under mocks' previews). The rule says so as an advisory.
PROJECT_DSN_SKIP = "app-dsn-set: the DSN on stdin comes from a GlitchTip project created by this update; it is checked at `pulumi up`"


def findings(resources: list[Resource], config: dict | None = None) -> list[tuple[str, str, str]]:
    """(policy, message, resource name) of every violation."""
    run = run_pack(resources, config)
    skipped = {policy: notes for policy, notes in run.skipped.items() if notes != [PROJECT_DSN_SKIP]}
    assert skipped == {}, f"rules skipped values: {run.skipped}"
    return [(f.policy, f.message, (f.urn or "").rsplit("::", 1)[-1]) for f in run.findings]


def named(resources: list[Resource], name: str) -> Resource:
    matches = [r for r in resources if r.name == name]
    assert len(matches) == 1, name
    return matches[0]


def set_prop(resource: Resource, key: str, value: Any) -> None:
    """Change an input (and the output the engine would show for it)."""
    resource.props[key] = value
    if resource.outputs is not None:
        resource.outputs[key] = value


def rewrite_args(resource: Resource, change: Callable[[list[str]], list[str]]) -> None:
    """Re-render create and update with changed arguments, as the program would."""
    script, args = parse_command(resource.props["create"])
    command = render_script(script, change(list(args)))
    set_prop(resource, "create", command)
    set_prop(resource, "update", command)


def rewrite_compose(resource: Resource, change: Callable[[dict], None]) -> None:
    def with_compose(args: list[str]) -> list[str]:
        document = yaml.safe_load(args[-1])
        change(document)
        return [*args[:-1], yaml.safe_dump(document, sort_keys=False)]

    rewrite_args(resource, with_compose)


# ---------------------------------------------------------------------------- the shipped stacks


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("stack", "config"),
    [("prod", lambda: harness.prod_config()), ("staging", lambda: staging_config())],
    ids=["prod", "staging"],
)
def test_the_shipped_stacks_break_no_rule(stack: str, config: Callable[[], dict], mode: str) -> None:
    resources = program_resources(config(), mode, stack=stack)
    assert {r.type for r in resources} >= {"command:remote:Command", "random:index/randomPassword:RandomPassword"}
    assert findings(resources) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("overrides", "pack_config"),
    [
        (dict(exposure="tls", domain="glitchtip.example.com"), None),
        (dict(serverMode="split", valkey=True, memoryBudgetMb=1536), {"memory-within-budget": {"memoryBudgetMb": 1536}}),
        (dict(dsnTarget="glitchtip", glitchtipDsn=harness.GLITCHTIP_DSN), None),
        (dict(dsnTarget="dual", glitchtipDsn=harness.GLITCHTIP_DSN), None),
        (dict(dsnTarget="dual"), None),
        (dict(smtpUrl="smtp+tls://mailer:SmtpPassw0rdXyz@smtp.example.com:587", backupOffsiteCommand="rclone copy \"$1\" offsite:gt/"), None),
    ],
    ids=["tls", "split-valkey", "cutover", "dual", "dual-provisioned", "smtp-offsite"],
)
def test_supported_variants_break_no_rule(overrides: dict, pack_config: dict | None, mode: str) -> None:
    resources = program_resources(harness.prod_config(**overrides), mode)
    assert findings(resources, pack_config) == []


def test_the_fresh_preview_really_hides_what_does_not_exist_yet() -> None:
    """The mode is only worth something if the deploy's stdin (.env, passwords) is unknown in it."""
    resources = program_resources(harness.prod_config(), "fresh-preview")
    deploy = named(resources, "glitchtip-deploy")
    assert deploy.props["stdin"] == builders.UNKNOWN
    assert named(resources, "glitchtip-admin-password").outputs["result"] == builders.UNKNOWN
    assert "services:" in parse_command(deploy.props["create"])[1][-1]  # compose.yaml itself is known


# ---------------------------------------------------------------------------- broken configurations


@pytest.mark.parametrize("mode", MODES)
def test_a_backup_at_the_maintenance_hour_is_the_only_violation(mode: str) -> None:
    resources = program_resources(harness.prod_config(backupSchedule="30 5 * * *"), mode)
    assert findings(resources) == [
        ("backup-configured", "The backup schedule must stay out of GlitchTip's 05:00 maintenance hour.", "glitchtip-backup-install")
    ]


@pytest.mark.parametrize("mode", MODES)
def test_a_short_backup_retention_is_the_only_violation(mode: str) -> None:
    resources = program_resources(harness.prod_config(backupRetentionDays=3), mode)
    assert findings(resources) == [
        ("backup-configured", "Backups must be kept at least 7 days (backupRetentionDays).", "glitchtip-backup-install")
    ]


@pytest.mark.parametrize("mode", MODES)
def test_a_backup_whose_stdin_is_unknown_is_still_checked(mode: str) -> None:
    """Once the heartbeat URL comes from a GlitchTip monitor, the install step's stdin is unknown
    at the first preview; schedule and retention are its arguments, so they are still checked."""
    resources = program_resources(harness.prod_config(backupSchedule="30 5 * * *"), mode)
    set_prop(named(resources, "glitchtip-backup-install"), "stdin", builders.UNKNOWN)
    assert findings(resources) == [
        ("backup-configured", "The backup schedule must stay out of GlitchTip's 05:00 maintenance hour.", "glitchtip-backup-install")
    ]


@pytest.mark.parametrize("mode", MODES)
def test_the_program_s_own_budget_is_used_and_limits_above_it_are_the_only_violation(mode: str) -> None:
    """memoryBudgetMb=1536 against the pack's default 1024: compose.yaml declares 1504, the
    budget less the relay's reserved 32 (x-memory-budget-mb), so its limits fit; limits above
    the declared budget do not."""
    resources = program_resources(harness.prod_config(memoryBudgetMb=1536), mode)
    deploy = named(resources, "glitchtip-deploy")
    assert yaml.safe_load(parse_command(deploy.props["create"])[1][-1])["x-memory-budget-mb"] == 1536 - 32
    assert findings(resources) == []
    rewrite_compose(deploy, lambda document: document.update({"x-memory-budget-mb": 1024}))
    assert findings(resources) == [
        ("memory-within-budget", "The services' memory limits must add up to no more than the memory budget (memoryBudgetMb).", "glitchtip-deploy")
    ]


@pytest.mark.parametrize("mode", MODES)
def test_an_unpinned_docker_is_the_only_advisory(mode: str) -> None:
    resources = program_resources(harness.prod_config(), mode)
    rewrite_args(named(resources, "vps-docker"), lambda args: ["latest"])
    assert findings(resources) == [
        ("docker-pinned", "Docker must be installed at a pinned version (install-docker.sh VERSION, such as 28.5.2).", "vps-docker")
    ]


# ---------------------------------------------------------------------------- broken resource lists


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_compose_file_gives_exactly_its_violations(mode: str) -> None:
    resources = program_resources(harness.prod_config(), mode)

    def break_it(document: dict) -> None:
        services = document["services"]
        services["glitchtip"]["image"] = "glitchtip/glitchtip:latest"
        services["glitchtip"]["environment"]["ENABLE_USER_REGISTRATION"] = "True"
        services["postgres"]["ports"] = ["5432:5432"]
        services["postgres"].pop("mem_limit")

    rewrite_compose(named(resources, "glitchtip-deploy"), break_it)
    assert findings(resources) == [
        ("images-pinned-by-digest", "Service 'glitchtip' image must not use the latest tag.", "glitchtip-deploy"),
        ("images-pinned-by-digest", "Service 'glitchtip' image must be pinned by digest (name:tag@sha256:...).", "glitchtip-deploy"),
        ("memory-within-budget", "Service 'postgres' must have a memory limit (mem_limit).", "glitchtip-deploy"),
        ("loopback-only-ports", "Service 'postgres' must publish its ports on 127.0.0.1 only.", "glitchtip-deploy"),
        ("registration-closed", "Service 'glitchtip' must set ENABLE_USER_REGISTRATION to False.", "glitchtip-deploy"),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_a_stack_without_its_backup_gives_exactly_that_violation(mode: str) -> None:
    resources = [r for r in program_resources(harness.prod_config(), mode) if r.name != "glitchtip-backup-install"]
    assert findings(resources) == [
        ("backup-configured", "A BackupJob (install-backup.sh) must accompany the GlitchTip stack.", "glitchtip-deploy")
    ]


@pytest.mark.parametrize("mode", ["up", "preview"])
def test_a_password_on_the_command_line_gives_exactly_that_violation(mode: str) -> None:
    resources = program_resources(harness.prod_config(), mode)
    password = named(resources, "glitchtip-admin-password").outputs["result"]
    rewrite_args(named(resources, "glitchtip-deploy"), lambda args: [*args[:-1], password, args[-1]])
    assert findings(resources) == [
        ("no-secrets-in-commands", "The create command must not contain a generated secret: pass secrets on stdin.", "glitchtip-deploy"),
        ("no-secrets-in-commands", "The update command must not contain a generated secret: pass secrets on stdin.", "glitchtip-deploy"),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_unverified_connections_are_each_reported(mode: str) -> None:
    resources = program_resources(harness.prod_config(), mode)
    commands = [r for r in resources if r.type == "command:remote:Command"]
    for command in commands:
        connection = copy.deepcopy(command.props["connection"])
        connection.pop("hostKey")
        set_prop(command, "connection", connection)
    assert findings(resources) == [
        ("remote-host-verified", "The connection must pin the server's host key (hostKey).", c.name) for c in commands
    ]


@pytest.mark.parametrize("mode", MODES)
def test_a_logged_secret_step_gives_exactly_that_violation(mode: str) -> None:
    resources = program_resources(harness.prod_config(), mode)
    set_prop(named(resources, "glitchtip-backup-install"), "logging", "stdoutAndStderr")
    assert findings(resources) == [
        ("secret-steps-log-nothing", "A step that reads secrets on stdin must set logging to none.", "glitchtip-backup-install")
    ]


def test_compose_only_on_stdin_cannot_be_checked_in_a_fresh_preview() -> None:
    """The older deploy shape (compose.yaml inside the secret stdin): in the first preview
    every compose rule says it cannot check, instead of passing silently."""
    resources = program_resources(harness.prod_config(), "fresh-preview")
    rewrite_args(named(resources, "glitchtip-deploy"), lambda args: [*args[:-1], "0" * 64])
    assert findings(resources) == [
        ("images-pinned-by-digest", "The compose file must be known at preview (deploy-stack.sh's last argument) for images to be checked.", "glitchtip-deploy"),
        ("memory-within-budget", "The compose file must be known at preview (deploy-stack.sh's last argument) for memory limits to be checked.", "glitchtip-deploy"),
        ("loopback-only-ports", "The compose file must be known at preview (deploy-stack.sh's last argument) for published ports to be checked.", "glitchtip-deploy"),
        ("registration-closed", "The compose file must be known at preview (deploy-stack.sh's last argument) for registration settings to be checked.", "glitchtip-deploy"),
    ]


CUTOVER = dict(dsnTarget="glitchtip", glitchtipDsn=harness.GLITCHTIP_DSN)


@pytest.mark.parametrize("mode", MODES)
def test_a_cutover_to_a_dsn_elsewhere_gives_exactly_that_violation(mode: str) -> None:
    elsewhere = "https://0123456789abcdef0123456789abcdef@errors.example.org/1"
    resources = program_resources(harness.prod_config(**{**CUTOVER, "glitchtipDsn": elsewhere}), mode)
    if mode == "fresh-preview":  # stdin also carries the API token, which no first preview knows
        assert findings(resources) == []
        assert run_pack(resources).skipped == {"app-dsn-gated": [PROJECT_DSN_SKIP]}
        return
    assert findings(resources) == [("app-dsn-gated", "An AppDsn aimed at glitchtip must use a DSN of this stack's GlitchTip.", "app-dsn-set")]


@pytest.mark.parametrize("mode", MODES)
def test_a_cutover_that_does_not_wait_for_the_stack_gives_exactly_that_violation(mode: str) -> None:
    resources = program_resources(harness.prod_config(**CUTOVER), mode)
    step = named(resources, "app-dsn-set")
    assert named(resources, "glitchtip-deploy").urn in step.dependencies  # what the program really registers
    step.dependencies = []
    assert findings(resources) == [
        ("app-dsn-gated", "An AppDsn aimed at glitchtip must depend on the stack's deploy step, so its gate checks a running GlitchTip.", "app-dsn-set")
    ]
