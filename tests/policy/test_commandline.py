"""policies/commandline.py (the pack's dependency-free parser) agrees with components.remote."""

from __future__ import annotations

import pytest

from components import remote
from policies import commandline
from tests import harness

ARGUMENT_SHAPES = [
    (),
    ("28.5.2",),
    ("/opt/glitchtip", "glitchtip", "8000", "600", "admin@example.com", "fail"),
    ("", "two words", "it's quoted", 'double "quotes"', "$HOME and `ticks` and \\ backslash"),
    ("line one\nline two\n", "tab\there", "ünïcödé ✓"),
    ("x" * 5000,),
]
SCRIPTS = ["install-docker.sh", "deploy-stack.sh", "set-dsn.sh", "install-backup.sh", "preflight.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("args", ARGUMENT_SHAPES, ids=lambda a: f"{len(a)}-args")
def test_both_parsers_read_every_rendered_command_the_same(script: str, args: tuple[str, ...]) -> None:
    command = remote.render_script(script, args)
    assert commandline.parse_command(command) == remote.parse_command(command) == (script, list(args))


def test_the_compose_file_argument_round_trips() -> None:
    """deploy-stack.sh's last argument is compose.yaml: YAML with quotes, $$ and newlines."""
    create = harness.run_program(harness.prod_config()).named("glitchtip-deploy").inputs["create"]
    script, args = commandline.parse_command(create)
    assert script == "deploy-stack.sh"
    assert args == remote.parse_command(create)[1]
    assert args[-1].startswith("# GlitchTip on this server") and "services:" in args[-1]


def test_read_command_separates_the_checked_in_program_from_the_arguments() -> None:
    rendered = commandline.read_command(remote.render_script("install-docker.sh", ["28.5.2"]))
    assert rendered.header == "# glitchtip-migration: install-docker.sh 28.5.2"
    assert rendered.program == remote.bundle("install-docker.sh")
    assert (rendered.script, rendered.args) == ("install-docker.sh", ("28.5.2",))


@pytest.mark.parametrize(
    "command",
    ["echo hello", "", "#!/bin/sh\nbash -c 'true' x", "# glitchtip-migration: x.sh\nsh -c 'true' x.sh"],
)
def test_other_strings_are_not_taken_for_rendered_commands(command: str) -> None:
    with pytest.raises(ValueError):
        commandline.parse_command(command)
    with pytest.raises(ValueError):
        commandline.read_command(command)
