#!/usr/bin/env python3
"""The restore drill: prove, on the server, that the newest (or a named) backup set restores.

Runs the installed `restore.sh --verify [SET]` over one SSH connection with the pinned host
key: the set's checksums are checked, the database is restored into a throwaway Postgres
container with no network (removed afterwards, even on failure) and its row counts are
compared with the set's manifest; the live GlitchTip is not touched. The report is printed
as restore.sh wrote it, then one summary line.

    .venv/bin/python scripts/restore_drill.py                  # inside the project: reads the stack
    .venv/bin/python scripts/restore_drill.py --set glitchtip-20261204T020000Z
    0 6 * * 1 cd /srv/glitchtip-migration && .venv/bin/python scripts/restore_drill.py --quiet || notify ...

Where things are: flags, else environment variables, else the Pulumi stack (config host,
sshHostKey, sshPrivateKey/sshPrivateKeyPath, sshUser, sshPort; output restoreScript), else
Pulumi.yaml's defaults (installDir/bin/restore.sh), as for the other operator tools.

Exit status: 0 the set restores and matches its manifest, 1 it does not (or restore.sh
could not run the drill: no set, another backup running...), 2 cannot run (settings, SSH).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `components` and `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts._common import (  # noqa: E402
    EXIT_OK,
    EXIT_PROBLEM,
    ToolError,
    add_ssh_args,
    human_duration,
    load_target,
    run_main,
    ssh_runner,
)

TOOL = "restore_drill"
OUTPUT_RESTORE_SCRIPT = "restoreScript"
_SET = re.compile(r"^glitchtip-\d{8}T\d{6}Z(-final)?$")


@dataclass(frozen=True)
class Drill:
    """What one drill found."""

    ok: bool
    set_name: str | None
    report: str
    problem: str | None
    seconds: float

    def summary(self) -> str:
        name = self.set_name or "?"
        if self.ok:
            return f"{TOOL}: OK {name} restores into a scratch database and matches its manifest ({human_duration(self.seconds)})"
        return f"{TOOL}: FAILED {name}: {self.problem}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="restore_drill.py", description=__doc__.splitlines()[0])
    parser.add_argument("--set", help="the set to verify, by name (default: the newest on the server)")
    parser.add_argument("--restore-script", help=f"restore.sh on the server [GLITCHTIP_RESTORE_SCRIPT; stack output {OUTPUT_RESTORE_SCRIPT}; "
                        "else installDir/bin/restore.sh]")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds the drill may take (default 3600)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    add_ssh_args(parser)
    args = parser.parse_args(argv)
    if args.set and not _SET.match(args.set):
        parser.error(f"--set {args.set!r} is not a set name (glitchtip-YYYYMMDDTHHMMSSZ[-final]; see restore.sh --list)")
    return args


def interpret(rc: int, stdout: str, stderr: str, seconds: float) -> Drill:
    """restore.sh --verify's exit status and output -> the drill's verdict."""
    found = re.search(r"^set: (\S+)", stdout, re.M)
    set_name = found.group(1) if found else None
    last = (stdout.strip().splitlines() or [""])[-1]
    if rc == 0 and last.startswith("verify: OK "):
        return Drill(True, set_name, stdout, None, seconds)
    if last.startswith("verify: FAILED "):
        problem = last.split(": ", 2)[-1]
    else:
        errors = [line for line in stderr.splitlines() if ": error: " in line]
        problem = (errors[-1].split(": error: ", 1)[1] if errors else (stderr.strip().splitlines() or [f"exit {rc}"])[-1])
    return Drill(False, set_name, stdout, problem, seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = load_target(args)
    if target.ssh is None:
        raise ToolError("the server is unknown: pass --ssh-host (with --ssh-host-key and --ssh-key-file), or run inside the project.")
    script = (args.restore_script or os.environ.get("GLITCHTIP_RESTORE_SCRIPT") or target.stack.output(OUTPUT_RESTORE_SCRIPT)
              or f"{target.config('installDir')}/bin/restore.sh")
    command = shlex.join([str(script), "--verify", *([args.set] if args.set else [])])
    started = time.monotonic()
    with ssh_runner(target.ssh) as runner:
        result = runner.run(f"{command} </dev/null", timeout=args.timeout)
    if result.rc == 127:  # the shell found no such command
        raise ToolError(f"{script} is not on {target.ssh.host}: is BackupJob installed (pulumi up)? Pass --restore-script otherwise.")
    drill = interpret(result.rc, result.stdout, result.stderr, time.monotonic() - started)
    if not args.quiet and drill.report.strip():
        print(drill.report.rstrip())
    print(drill.summary())
    return EXIT_OK if drill.ok else EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(run_main(TOOL, main))
