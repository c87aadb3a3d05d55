"""backup-configured, app-dsn-gated, docker-pinned: rules over the whole stack."""

from __future__ import annotations

import pytest
from pulumi_policy import EnforcementLevel

from tests.policy import builders as b
from tests.policy.support import Resource, check_stack, policy

UNKNOWN = b.UNKNOWN

# ---------------------------------------------------------------------------- backup-configured

BACKUP = "backup-configured"


def test_backup_happy_path() -> None:
    outcome = check_stack(BACKUP, b.stack())
    assert outcome.violations == [] and outcome.skipped == []


def test_no_stack_needs_no_backup() -> None:
    assert check_stack(BACKUP, [b.docker()]).violations == []


def test_a_stack_without_backup_is_refused() -> None:
    resources = b.stack(backup=None)
    deploy = next(r for r in resources if r.name == "glitchtip-deploy")
    assert check_stack(BACKUP, resources).violations == [
        ("A BackupJob (install-backup.sh) must accompany the GlitchTip stack.", deploy.urn)
    ]


def test_a_backup_of_another_server_does_not_count() -> None:
    elsewhere = b.backup(conn=b.connection(host="198.51.100.7"))
    deploy = next(r for r in b.stack() if r.name == "glitchtip-deploy")
    assert check_stack(BACKUP, [deploy, elsewhere]).violations == [
        ("A BackupJob must back up the server the GlitchTip stack runs on.", deploy.urn)
    ]


@pytest.mark.parametrize("retention", [1, 6])
def test_short_retention_is_refused(retention: int) -> None:
    backup = b.backup(retention=retention)
    assert check_stack(BACKUP, b.stack(backup=backup)).violations == [
        ("Backups must be kept at least 7 days (backupRetentionDays).", backup.urn)
    ]


def test_seven_days_is_enough() -> None:
    assert check_stack(BACKUP, b.stack(backup=b.backup(retention=7))).violations == []


@pytest.mark.parametrize("schedule", ["30 5 * * *", "0 * * * *", "0 4-6 * * *", "15 1,5 * * *", "0 */5 * * *", "0 5 * * sun"])
def test_a_schedule_in_the_maintenance_hour_is_refused(schedule: str) -> None:
    backup = b.backup(schedule=schedule)
    assert check_stack(BACKUP, b.stack(backup=backup)).violations == [
        ("The backup schedule must stay out of GlitchTip's 05:00 maintenance hour.", backup.urn)
    ]


@pytest.mark.parametrize("schedule", ["0 2 * * *", "59 4 * * *", "0 */6 * * *", "0 6-23 * * 1-5"])
def test_schedules_clear_of_05_pass(schedule: str) -> None:
    assert check_stack(BACKUP, b.stack(backup=b.backup(schedule=schedule))).violations == []


def test_thresholds_come_from_the_pack_config() -> None:
    backup = b.backup(retention=14, schedule="0 2 * * *")
    outcome = check_stack(BACKUP, b.stack(backup=backup), {"minRetentionDays": 30.0, "maintenanceHour": 2.0})
    assert outcome.messages == [
        "Backups must be kept at least 30 days (backupRetentionDays).",
        "The backup schedule must stay out of GlitchTip's 02:00 maintenance hour.",
    ]


def test_an_unknown_stdin_hides_neither_schedule_nor_retention() -> None:
    """The first preview once the heartbeat URL comes from a GlitchTip monitor: stdin is
    unknown, but schedule and retention are arguments, so the rule still checks them."""
    assert b.backup().props["stdin"].startswith("HEARTBEAT_URL=")
    happy = check_stack(BACKUP, b.stack(backup=b.backup(stdin=UNKNOWN)))
    assert happy.violations == [] and happy.skipped == []
    backup = b.backup(stdin=UNKNOWN, schedule="30 5 * * *", retention=3)
    outcome = check_stack(BACKUP, b.stack(backup=backup))
    assert outcome.violations == [
        ("Backups must be kept at least 7 days (backupRetentionDays).", backup.urn),
        ("The backup schedule must stay out of GlitchTip's 05:00 maintenance hour.", backup.urn),
    ]
    assert outcome.skipped == []


def test_unreadable_backup_files_are_refused() -> None:
    backup = b.backup(replace={"CONF": "# backup.conf\nBACKUP_DIR=/var/backups/glitchtip\n", "CRON": "# nothing scheduled\n"})
    assert check_stack(BACKUP, b.stack(backup=backup)).messages == [
        "The backup's retention must be readable (RETENTION_DAYS in backup.conf).",
        "The backup schedule must be a readable five-field cron schedule.",
    ]


def test_an_older_render_without_the_files_as_arguments_is_refused() -> None:
    """Schedule and retention are read from the arguments only (never from stdin)."""
    backup = b.command("glitchtip-backup-install", "install-backup.sh", ["/opt/glitchtip", "/var/backups/glitchtip"],
                       stdin="CONF_B64=\nCRON_B64=\n")
    assert check_stack(BACKUP, b.stack(backup=backup)).messages == [
        "The backup's retention must be readable (RETENTION_DAYS in backup.conf).",
        "The backup schedule must be a readable five-field cron schedule.",
    ]


def test_an_unknown_command_is_skipped_with_its_reason() -> None:
    resources = b.stack() + [b.command("app-dsn-set", "set-dsn.sh", create=UNKNOWN)]
    outcome = check_stack(BACKUP, resources)
    assert outcome.violations == []
    assert outcome.skipped == ["app-dsn-set: its command is only known once the resources it reads exist; backups are checked at `pulumi up`"]


# ---------------------------------------------------------------------------- app-dsn-gated

GATE = "app-dsn-gated"


def gated(**kwargs) -> tuple[list, object]:
    """A stack with a cutover step depending on the deploy; returns (resources, set-dsn resource)."""
    resources = b.stack()
    deploy = next(r for r in resources if r.name == "glitchtip-deploy")
    kwargs.setdefault("dependencies", [deploy.urn])
    step = b.set_dsn(**kwargs)
    return resources + [step], step


def test_gate_happy_path() -> None:
    resources, _ = gated()
    outcome = check_stack(GATE, resources)
    assert outcome.violations == [] and outcome.skipped == []


def test_a_rollback_to_sentry_is_never_gated() -> None:
    outcome = check_stack(GATE, [b.set_dsn("sentry", url="", dsn=b.SENTRY_DSN, dependencies=[])])
    assert outcome.violations == []


def test_an_indirect_dependency_on_the_deploy_counts() -> None:
    resources = b.stack()
    deploy = next(r for r in resources if r.name == "glitchtip-deploy")
    project = Resource(type="pulumi-python:dynamic:Resource", name="glitchtip-project", props={}, dependencies=[deploy.urn])
    step = b.set_dsn(dependencies=[project.urn])
    assert check_stack(GATE, resources + [project, step]).violations == []


def test_a_cutover_that_does_not_wait_for_the_stack_is_refused() -> None:
    resources, step = gated(dependencies=[])
    assert check_stack(GATE, resources).violations == [
        ("An AppDsn aimed at glitchtip must depend on the stack's deploy step, so its gate checks a running GlitchTip.", step.urn)
    ]


def test_a_cutover_without_a_stack_is_refused() -> None:
    step = b.set_dsn(dependencies=[])
    assert check_stack(GATE, [step]).violations == [
        ("An AppDsn aimed at glitchtip must have a GlitchTip stack (deploy-stack.sh) to cut over to.", step.urn)
    ]


def test_a_cutover_whose_script_lost_its_gate_is_refused() -> None:
    args = ["/opt/ai-admin/.env", "glitchtip", "http://127.0.0.1:8000", "ai-admin-api", ""]
    create = b.custom_command("set-dsn.sh", b.set_dsn_program_without_gate(), args)
    resources, step = gated(create=create)
    assert check_stack(GATE, resources).violations == [
        ("The cutover to glitchtip must run set-dsn.sh's gate before the app's DSN changes.", step.urn)
    ]


@pytest.mark.parametrize("url", ["", "http://203.0.113.99:8000", "https://status.example.org"])
def test_a_gate_aimed_elsewhere_is_refused(url: str) -> None:
    resources, step = gated(url=url)
    assert check_stack(GATE, resources).messages == [
        "The cutover gate must check this stack's GlitchTip (a loopback GLITCHTIP_URL or the stack's domain)."
    ]


def test_with_tls_the_gate_may_check_the_public_domain() -> None:
    resources = b.stack(deploy=b.deploy(b.compose_document(tls=True)))
    deploy = next(r for r in resources if r.name == "glitchtip-deploy")
    step = b.set_dsn(url=f"https://{b.DOMAIN}", dsn=f"https://0123456789abcdef0123456789abcdef@{b.DOMAIN}/1", dependencies=[deploy.urn])
    assert check_stack(GATE, resources + [step]).violations == []


def test_a_dsn_of_another_service_is_refused() -> None:
    resources, step = gated(dsn=b.SENTRY_DSN)
    outcome = check_stack(GATE, resources)
    assert outcome.violations == [("An AppDsn aimed at glitchtip must use a DSN of this stack's GlitchTip.", step.urn)]
    assert b.SENTRY_DSN not in outcome.messages[0]


def test_a_cutover_without_dsn_is_refused() -> None:
    resources, step = gated(dsn=None)
    assert check_stack(GATE, resources).messages == ["An AppDsn aimed at glitchtip must carry the target DSN on stdin (DSN=...)."]


def test_a_dsn_from_a_project_not_created_yet_is_skipped_with_its_reason() -> None:
    resources, _ = gated(stdin=UNKNOWN, url="")
    outcome = check_stack(GATE, resources)
    assert outcome.messages == ["The cutover gate must check this stack's GlitchTip (a loopback GLITCHTIP_URL or the stack's domain)."]
    assert outcome.skipped == [
        "app-dsn-set: the DSN on stdin comes from a GlitchTip project created by this update; it is checked at `pulumi up`"
    ]


# ---------------------------------------------------------------------------- docker-pinned

DOCKER = "docker-pinned"


def test_docker_rule_is_advisory() -> None:
    assert policy(DOCKER).enforcement_level == EnforcementLevel.ADVISORY


def test_docker_happy_path() -> None:
    assert check_stack(DOCKER, b.stack()).violations == []


@pytest.mark.parametrize("version", ["latest", "28", "stable", None], ids=["latest", "major-only", "channel", "missing"])
def test_an_unpinned_docker_is_reported(version: str | None) -> None:
    docker = b.docker(version)
    assert check_stack(DOCKER, b.stack(docker=docker)).violations == [
        ("Docker must be installed at a pinned version (install-docker.sh VERSION, such as 28.5.2).", docker.urn)
    ]


def test_a_stack_without_the_official_installer_is_reported() -> None:
    resources = b.stack(docker=None)
    deploy = next(r for r in resources if r.name == "glitchtip-deploy")
    assert check_stack(DOCKER, resources).violations == [
        ("Docker must be installed from Docker's apt repository by install-docker.sh.", deploy.urn)
    ]


# ---------------------------------------------------------------------------- app-dsn-gated: dsnTarget=dual

RELAY_DSN = f"http://f0e84f5737f802e81f871ed4cad0abcd@127.0.0.1:9010/{b.SENTRY_DSN.rstrip('/').rsplit('/', 1)[1]}"


def dual_gated(relay_dependency: bool = True, dsn: str = RELAY_DSN, relay_port: str = "9010") -> tuple[list, object]:
    """A stack, the relay step after its deploy, and a set-dsn.sh dual step after both (or only after the deploy)."""
    from components.relay import RelaySpec, render_compose

    resources = b.stack()
    deploy = next(r for r in resources if r.name == "glitchtip-deploy")
    compose = render_compose(RelaySpec(port=int(relay_port), upstream_service="glitchtip", glitchtip_port=8000), "nginx:1.29@sha256:" + "a" * 64, 32)
    relay = b.command("relay-install", "install-relay.sh", ["/opt/glitchtip/relay", "glitchtip-relay", relay_port, compose],
                      stdin="CONF_B64=aHR0cCB7Cn0K\n", dependencies=[deploy.urn])
    stdin = f"DSN={dsn}\nSENTRY_DSN={b.SENTRY_DSN}\nGLITCHTIP_DSN={b.GLITCHTIP_DSN}\n"
    step = b.set_dsn("dual", stdin=stdin, dependencies=[deploy.urn, *([relay.urn] if relay_dependency else [])])
    return resources + [relay, step], step


def test_dual_gate_happy_path() -> None:
    resources, _ = dual_gated()
    outcome = check_stack(GATE, resources)
    assert outcome.violations == [] and outcome.skipped == []


def test_dual_without_waiting_for_the_relay_is_refused() -> None:
    resources, step = dual_gated(relay_dependency=False)
    assert check_stack(GATE, resources).violations == [(
        "An AppDsn aimed at dual must depend on the relay step (install-relay.sh), so the app never points at a relay that is not running.",
        step.urn,
    )]


def test_dual_without_waiting_for_the_stack_is_refused() -> None:
    resources, step = dual_gated()
    step.dependencies[:] = [u for u in step.dependencies if "relay" in u]
    relay = next(r for r in resources if r.name == "relay-install")
    relay.dependencies[:] = []
    assert check_stack(GATE, resources).messages == [
        "An AppDsn aimed at dual must depend on the stack's deploy step, so its gate checks a running GlitchTip."
    ]


@pytest.mark.parametrize("dsn", [b.SENTRY_DSN, RELAY_DSN.replace(":9010", ":9011"), RELAY_DSN.replace("127.0.0.1", "203.0.113.5")])
def test_dual_with_a_dsn_other_than_the_relays_is_refused(dsn: str) -> None:
    resources, step = dual_gated(dsn=dsn)
    outcome = check_stack(GATE, resources)
    assert outcome.violations == [(
        "An AppDsn aimed at dual must use the relay's DSN (http://KEY@127.0.0.1:<relayPort>/PROJECT_ID, the relay step's port).",
        step.urn,
    )]
    assert b.SENTRY_DSN not in outcome.messages[0]


def test_the_relays_compose_is_checked_by_the_compose_rules() -> None:
    from components.relay import RelaySpec, render_compose
    from tests.policy.support import check

    text = render_compose(RelaySpec(port=9010, upstream_service="glitchtip", glitchtip_port=8000), "nginx:1.29@sha256:" + "a" * 64, 32)
    ok = b.command("relay-install", "install-relay.sh", ["/opt/glitchtip/relay", "glitchtip-relay", "9010", text])
    assert check("loopback-only-ports", ok).violations == []
    public = b.command("relay-install", "install-relay.sh", ["/opt/glitchtip/relay", "glitchtip-relay", "9010", text.replace("127.0.0.1:9010:9010", "9010:9010")])
    assert check("loopback-only-ports", public).violations != []
    unpinned = b.command("relay-install", "install-relay.sh", ["/opt/glitchtip/relay", "glitchtip-relay", "9010", text.replace("@sha256:" + "a" * 64, "")])
    assert check("images-pinned-by-digest", unpinned).violations != []
