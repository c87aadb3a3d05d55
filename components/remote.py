"""The remote layer: one verified SSH connection, and one way to run a checked-in script.

Every step on the server is a `pulumi_command.remote.Command` that runs a script kept
under components/remote/ (never a Python string). The rules it enforces are the ones
that bite real users (shared/pulumi-traps.md):

- the host key is always pinned (trap 5);
- the script's bytes and its non-secret arguments are the command string itself, so an
  edited script is an UPDATE that re-runs it, not a `triggers` replace whose
  create-before-delete would undo it (traps 1, 2);
- secrets reach the script on stdin only, never in create/update/delete or the
  environment (traps 3, 4); steps that handle secrets log nothing and mark their
  output secret;
- the previous output is never injected into the environment.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
from pulumi_command import remote

SCRIPTS = Path(__file__).resolve().parent / "remote"
LIB = "lib.sh"


@dataclass(frozen=True)
class Step:
    """One script invocation: the script's file name under components/remote/ and its arguments.

    Arguments are plain strings (never secrets): they are part of the command string
    that Pulumi shows in previews and stores in state.
    """

    script: str
    args: tuple[str, ...] = ()

    def render(self) -> str:
        return render_script(self.script, self.args)


def script_text(name: str) -> str:
    """The bytes of a checked-in script (components/remote/NAME)."""
    return (SCRIPTS / name).read_text()


_BUNDLES = re.compile(r"^# Bundles: ([\w.-]+(?: [\w.-]+)*)$", re.MULTILINE)


def bundle(name: str) -> str:
    """lib.sh, the libraries the script names on a `# Bundles: a.sh b.sh` header line, then the
    script: a self-contained program for `bash -c`."""
    text = script_text(name)
    found = _BUNDLES.search(text)
    libs = found.group(1).split() if found else []
    parts = [script_text(LIB), *(f"# ---- {lib} ----\n{script_text(lib)}" for lib in libs)]
    return "\n".join(parts) + f"\n# ---- {name} ----\n{text}"


def render_script(name: str, args: Sequence[str] = ()) -> str:
    """The command string that runs components/remote/NAME with ARGS on the server.

    The first line names the script (and its short arguments) so previews and logs say
    what runs; the body is
    passed to `bash -c` as one quoted argument, so the remote login shell does not
    matter and stdin stays free for secrets.
    """
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"argument {arg!r} of {name} must be a plain string")
    quoted = " ".join(shlex.quote(a) for a in (name, *args))
    shown = " ".join(a if len(a) <= 100 and "\n" not in a else f"<{len(a)} bytes>" for a in args)
    return f"# glitchtip-migration: {name} {shown}".rstrip() + f"\nbash -c {shlex.quote(bundle(name))} {quoted}"


def parse_command(command: str) -> tuple[str, list[str]]:
    """The script name and arguments of a command string made by render_script."""
    header, _, body = command.partition("\n")
    if not header.startswith("# glitchtip-migration: "):
        raise ValueError("not a command rendered by render_script")
    words = shlex.split(body)
    return words[3], words[4:]


def component_depends_on(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """A component's own depends_on, to hand to its remote steps: children do not inherit it
    (pulumi-traps 9), and a step that ran before its component's dependencies would be wrong."""
    value = opts.depends_on if opts else None
    if value is None:
        return []
    if isinstance(value, pulumi.Resource):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError("depends_on must be a resource or a list of resources")


def connection_args(
    *, host: str, port: int, user: str, host_key: str, private_key: pulumi.Input[str]
) -> remote.ConnectionArgs:
    """The one place the SSH connection is built: host key pinned, bounded dialing."""
    return remote.ConnectionArgs(
        host=host,
        port=port,
        user=user,
        host_key=host_key,
        private_key=private_key,
        dial_error_limit=5,
        per_dial_timeout=15,
    )


def run_script(
    name: str,
    step: Step | pulumi.Output[Step],
    *,
    connection: pulumi.Input[remote.ConnectionArgs],
    parent: pulumi.Resource,
    stdin: pulumi.Input[str] | None = None,
    delete: Step | None = None,
    secret: bool = False,
    depends_on: Sequence[pulumi.Resource] = (),
    extra_secret_outputs: Sequence[str] = (),
) -> remote.Command:
    """Run a checked-in script on the server as one resource.

    `step` may be an Output when an argument is only known after another resource
    (it must still hold no secret). create and update run the same idempotent script (a second run changes nothing and
    says so); `delete` runs when the resource is destroyed. `secret=True` is for steps
    that read secrets on stdin or may print them: nothing is logged and stdout/stderr
    are stored as secrets.
    """
    command = step.apply(Step.render) if isinstance(step, pulumi.Output) else step.render()
    return remote.Command(
        name,
        connection=connection,
        create=command,
        update=command,
        delete=delete.render() if delete else None,
        stdin=stdin,
        add_previous_output_in_env=False,
        logging=remote.Logging.NONE if secret else remote.Logging.STDOUT_AND_STDERR,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            additional_secret_outputs=(["stdout", "stderr"] if secret else []) + list(extra_secret_outputs),
        ),
    )
