"""The program's graph under mocks: verified connections, no secret on any command line."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from components.remote import parse_command, render_script
from tests.harness import GLITCHTIP_DSN, SENTRY_DSN, Program, prod_config, run_program

SMTP_URL = "smtp+tls://mailer:SmtpPassw0rdXyz@smtp.example.com:587"


@pytest.fixture(scope="module", params=[False, True], ids=["up", "preview"])
def program(request) -> Program:
    config = prod_config(glitchtipDsn=GLITCHTIP_DSN, smtpUrl=SMTP_URL, dsnTarget="glitchtip")
    result = run_program(config, preview=request.param)
    assert result.error is None, result.error
    return result


def _secret_needles(program: Program) -> list[str]:
    """Every secret value the program knows, and the telltale parts of each."""
    config = prod_config()
    needles = [
        urlsplit(SENTRY_DSN).username,
        urlsplit(GLITCHTIP_DSN).username,
        "SmtpPassw0rdXyz",
        config["sshPrivateKey"].splitlines()[1],
        "PRIVATE KEY-----",
    ]
    for reg in program.registrations:
        if reg.type.startswith("random:"):
            needles += [str(v) for k, v in reg.inputs.items() if k in ("result", "hex", "base64") and v]
    return [n for n in needles if n]


def test_every_remote_command_verifies_the_server(program):
    assert program.commands, "the program registers no remote command"
    for reg in program.commands:
        connection = reg.inputs["connection"]
        assert connection.get("hostKey", "").startswith("ssh-ed25519 "), f"{reg.urn} does not pin the host key"
        assert connection["host"] == "46.149.70.219"
        assert "connection" in reg.secret_inputs, f"{reg.urn} stores its connection (private key) in plain text"


def test_no_secret_in_any_command_string(program):
    needles = _secret_needles(program)
    for reg in program.commands:
        for field in ("create", "update", "delete"):
            text = reg.inputs.get(field) or ""
            for needle in needles:
                assert needle not in text, f"{reg.urn} puts a secret on the command line ({field})"
        assert "environment" not in reg.inputs or not reg.inputs["environment"], f"{reg.urn} uses environment= (AcceptEnv trap)"
        assert reg.inputs.get("addPreviousOutputInEnv") is False, f"{reg.urn} injects previous output into the env"


def test_commands_are_updates_not_trigger_replacements(program):
    for reg in program.commands:
        assert not reg.inputs.get("triggers"), f"{reg.urn} uses triggers (replace runs create-before-delete)"
        assert reg.inputs["update"] == reg.inputs["create"], f"{reg.urn} has no update: an edit would re-create"


def test_steps_with_stdin_are_secret_and_silent(program):
    for reg in program.commands:
        if reg.inputs.get("stdin"):
            assert "stdin" in reg.secret_inputs, f"{reg.urn} sends a non-secret stdin; secrets only go there"
            assert reg.inputs.get("logging") == "none", f"{reg.urn} handles secrets but logs output"
            assert {"stdout", "stderr"} <= set(reg.additional_secret_outputs), f"{reg.urn} stores output in plain text"


def test_docker_host_graph(program):
    host = program.named("vps")
    assert host.type == "glitchtip:index:DockerHost"
    preflight, install = program.named("vps-preflight"), program.named("vps-docker")
    assert preflight.parent == host.urn and install.parent == host.urn
    assert preflight.urn in install.dependencies, "Docker is installed before the preflight passed"
    assert preflight.inputs["create"] == render_script("preflight.sh", ["8000", "1536", "10"])
    assert install.inputs["create"] == render_script("install-docker.sh", ["28.5.2"])
    assert install.inputs.get("delete") in (None, ""), "destroy must leave Docker installed by default"


def test_docker_uninstall_only_when_asked():
    program = run_program(prod_config(uninstallDockerOnDestroy=True))
    assert program.named("vps-docker").inputs["delete"] == render_script("uninstall-docker.sh")


def test_preflight_follows_port_and_budget():
    program = run_program(prod_config(glitchtipPort=8111, memoryBudgetMb=1500))
    assert program.named("vps-preflight").inputs["create"] == render_script("preflight.sh", ["8111", "2012", "10"])


def test_render_script_refuses_non_string_arguments():
    with pytest.raises(TypeError):
        render_script("preflight.sh", [8000])  # type: ignore[list-item]


def test_command_header_is_one_line_and_parses_back():
    compose = "services:\n  web:\n    image: x\n"
    command = render_script("preflight.sh", ["8000", compose])
    assert command.splitlines()[0] == "# glitchtip-migration: preflight.sh 8000 <30 bytes>"
    assert parse_command(command) == ("preflight.sh", ["8000", compose])
    with pytest.raises(ValueError):
        parse_command("echo hi")
