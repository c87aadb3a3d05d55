"""A stand-in `pm2` for the script tests: a JSON state file instead of a daemon.

It answers the commands set-dsn.sh and restore-dsn.sh use the way PM2 7 does, where it
matters to them: `jlist` prints the process list as one JSON line (after noise lines);
`restart ID... --update-env` merges the CALLER's whole environment into each process's
saved `env` (PM2's Utility.extend: keys are added or overwritten, never removed), gives
it a new pid and status online (or `errored` for a process marked `crash`); a plain
`restart` keeps the saved env; `save` writes PM2_HOME/dump.pm2. Every call is appended
to the log with its argv and its environment, so tests can see what reached PM2 and how.
A process marked `flap` gets a new pid on every `jlist` (a crash loop).

    install(bin_dir, state_path, log_path, pm2_home) -> path of the `pm2` executable
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def install(bin_dir: Path, state: Path, log: Path, pm2_home: Path) -> Path:
    """Write a `pm2` executable into bin_dir that runs this module on STATE and LOG."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "pm2"
    # The caller's environment as it reached this process (bash adds PWD and SHLVL to its own).
    exe.write_text(
        "#!/bin/bash\n"
        f"cat /proc/$$/environ >{state}.environ\n"
        f"exec {sys.executable} {Path(__file__).resolve()} {state} {log} {pm2_home} \"$@\"\n"
    )
    exe.chmod(0o755)
    pm2_home.mkdir(parents=True, exist_ok=True)
    (pm2_home / "pm2.pid").write_text(str(os.getpid()))  # a live pid: "the daemon runs"
    return exe


def process(pm_id: int, name: str, cwd: str, env: dict[str, str], **flags: bool) -> dict:
    return {"pm_id": pm_id, "name": name, "pm_cwd": cwd, "status": "online", "pid": 1000 + pm_id,
            "env": dict(env), "restarts": 0, **flags}


def _jlist(procs: list[dict]) -> list[dict]:
    out = []
    for p in procs:
        pm2_env = {"name": p["name"], "pm_id": p["pm_id"], "pm_cwd": p["pm_cwd"], "status": p["status"],
                   "restart_time": p["restarts"], "env": p["env"], **p["env"]}
        out.append({"pm_id": p["pm_id"], "name": p["name"], "pid": p["pid"] if p["status"] == "online" else 0,
                    "pm2_env": pm2_env})
    return out


def main(argv: list[str]) -> int:
    state_path, log_path, pm2_home, *args = argv
    state = json.loads(Path(state_path).read_text())
    raw = Path(f"{state_path}.environ").read_bytes().decode(errors="replace")
    caller_env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    with open(log_path, "a") as log:
        log.write(json.dumps({"argv": args, "env": caller_env}) + "\n")
    procs = state["procs"]
    command = args[0] if args else ""
    if command == "jlist":
        for p in procs:
            if p.get("flap"):
                p["pid"] += 1
        print("[PM2] some noise a real pm2 may print first")
        print(json.dumps(_jlist(procs)))
    elif command == "restart":
        if state.get("fail_restart"):
            print("[PM2][ERROR] restart failed", file=sys.stderr)
            return 1
        targets = [a for a in args[1:] if not a.startswith("-")]
        for target in targets:
            hit = [p for p in procs if str(p["pm_id"]) == target or p["name"] == target]
            if not hit:
                print(f"[PM2][ERROR] Process or Namespace {target} not found", file=sys.stderr)
                return 1
            for p in hit:
                if "--update-env" in args:
                    p["env"].update(caller_env)
                p["pid"] += 100
                p["restarts"] += 1
                p["status"] = "errored" if p.get("crash") else "online"
        print("┌────┬───────┐ (a table)")
    elif command == "save":
        dump = [{k: v for k, v in x["pm2_env"].items() if k != "pm_id"} for x in _jlist(procs)]  # as PM2 dumps
        Path(pm2_home, "dump.pm2").write_text(json.dumps(dump))
        print("[PM2] Saving current process list...")
    else:
        print(f"fake pm2: unsupported command {args}", file=sys.stderr)
        return 2
    Path(state_path).write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
