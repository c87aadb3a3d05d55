"""Read back the command strings components/remote.py renders, without importing it.

The pack runs in its own environment (PulumiPolicy.yaml), so it cannot import
`components`; this parser has no dependency beyond the standard library, and
tests/policy/test_commandline.py proves it agrees with `components.remote.parse_command`
on every shape the program renders. A rendered command is

    # glitchtip-migration: <script> <short args...>
    bash -c '<lib.sh + script>' <script> <args...>
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import lru_cache

HEADER = "# glitchtip-migration: "


@dataclass(frozen=True)
class Rendered:
    """The parts of a rendered command string."""

    header: str
    """The first line: `# glitchtip-migration: <script> <short args>`."""
    program: str
    """What `bash -c` runs: lib.sh and the script, checked-in code."""
    script: str
    """The script's file name under components/remote/."""
    args: tuple[str, ...]
    """The script's arguments (never secrets)."""


@lru_cache(maxsize=256)  # every rule reads the same few commands; shlex on a bundled script is slow
def read_command(command: str) -> Rendered:
    """The parts of a command string made by render_script; ValueError for any other string."""
    header, _, body = command.partition("\n")
    if not header.startswith(HEADER):
        raise ValueError("not a command rendered by render_script")
    words = shlex.split(body)
    if len(words) < 4 or words[:2] != ["bash", "-c"]:
        raise ValueError("not a command rendered by render_script")
    return Rendered(header, words[2], words[3], tuple(words[4:]))


def parse_command(command: str) -> tuple[str, list[str]]:
    """(script name, arguments) of a command string made by render_script, as components.remote.parse_command."""
    rendered = read_command(command)
    return rendered.script, list(rendered.args)
