#!/usr/bin/python3
"""`docker compose` (v2 CLI plugin) shim over Debian 12's docker-compose v1 (1.29).

Installed in the throwaway test server as /usr/libexec/docker/cli-plugins/docker-compose.
A TEST STAND-IN: it forwards to v1 and emulates the v2 bits a deployment uses
(`up --wait [--wait-timeout N]`, `ps` showing running containers only, compose.yaml
discovery, the top-level `name:` key). Container names stay v1's (`proj_web_1`): use
`compose ps -q SERVICE`, never a name.
"""
import atexit
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

SHIM_VERSION = "2.24.7"
V1 = "/usr/bin/docker-compose"
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
# Flags v2 knows and v1 rejects; value-taking ones are listed with True.
UP_DROP = {"--quiet-pull": False, "--pull": True, "-y": False, "--yes": False,
           "--menu": False, "--watch": False, "-w": False}


def die(msg, rc=1):
    sys.stderr.write(f"docker compose (shim): {msg}\n")
    sys.exit(rc)


def metadata():
    print(json.dumps({"SchemaVersion": "0.1.0", "Vendor": "glitchtip-migration tests",
                      "Version": f"v{SHIM_VERSION}",
                      "ShortDescription": "Docker Compose (test shim over docker-compose v1)"}))


def parse_global(argv):
    """Split v2 global options from the subcommand and its args."""
    opts = {"files": [], "project": None, "project_dir": None, "env_file": None,
            "profiles": [], "other": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        def val():
            nonlocal i
            if "=" in a:
                return a.split("=", 1)[1]
            i += 1
            if i >= len(argv):
                die(f"flag needs an argument: {a}")
            return argv[i]
        key = a.split("=", 1)[0]
        if key in ("-f", "--file"):
            opts["files"].append(val())
        elif key in ("-p", "--project-name"):
            opts["project"] = val()
        elif key == "--project-directory":
            opts["project_dir"] = val()
        elif key == "--env-file":
            opts["env_file"] = val()
        elif key == "--profile":
            opts["profiles"].append(val())
        elif key in ("--ansi", "--progress", "--parallel"):
            val()
        elif key in ("--compatibility", "--dry-run"):
            if key == "--dry-run":
                die("--dry-run is not supported by the shim")
        elif a.startswith("-"):
            die(f"unknown global flag {a}")
        else:
            return opts, argv[i:]
        i += 1
    return opts, []


def normalise(opts):
    """Resolve files and project dir; rewrite v2-only keys into a temp file for v1."""
    project_dir = opts["project_dir"] or os.getcwd()
    files = opts["files"]
    if not files:
        if os.environ.get("COMPOSE_FILE"):
            files = os.environ["COMPOSE_FILE"].split(os.pathsep)
        else:
            found = [f for f in DEFAULT_FILES if os.path.exists(os.path.join(project_dir, f))]
            if not found:
                die(f"no configuration file provided: not found in {project_dir}", 14)
            files = [os.path.join(project_dir, found[0])]
    files = [os.path.abspath(os.path.join(project_dir if not opts["files"] else os.getcwd(), f))
             for f in files]
    if not opts["project_dir"]:
        project_dir = os.path.dirname(files[0])
    project = opts["project"] or os.environ.get("COMPOSE_PROJECT_NAME")
    out_files = []
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh) or {}
        except OSError as e:
            die(f"open {f}: {e.strerror}", 14)
        changed = False
        if isinstance(doc, dict) and "name" in doc:
            name = str(doc.pop("name"))
            project = project or name
            changed = True
        for svc in (doc.get("services") or {}).values() if isinstance(doc, dict) else ():
            hc = svc.get("healthcheck") if isinstance(svc, dict) else None
            if isinstance(hc, dict) and "start_interval" in hc:
                hc.pop("start_interval")
                changed = True
        if changed:
            tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="compose-shim-",
                                              delete=False)
            yaml.safe_dump(doc, tmp, sort_keys=False)
            tmp.close()
            atexit.register(os.unlink, tmp.name)
            out_files.append(tmp.name)
        else:
            out_files.append(f)
    if not project:
        project = os.path.basename(os.path.abspath(project_dir))
    project = "".join(c for c in project.lower() if c.isalnum() or c in "-_")
    args = ["--compatibility", "--project-directory", project_dir, "-p", project]
    for f in out_files:
        args += ["-f", f]
    if opts["env_file"]:
        args += ["--env-file", opts["env_file"]]
    for p in opts["profiles"]:
        args += ["--profile", p]
    return args


def v1(base, *args, capture=False):
    cmd = [V1, *base, *args]
    if capture:
        return subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    return subprocess.run(cmd)


def inspect(ids):
    if not ids:
        return []
    r = subprocess.run(["docker", "inspect", *ids], stdout=subprocess.PIPE, text=True)
    return json.loads(r.stdout or "[]")


def project_ids(base, service=None, all_=True):
    r = v1(base, "ps", "-q", *([service] if service else []), capture=True)
    ids = [x for x in r.stdout.split() if x]
    if all_:
        return ids, r.returncode
    return [c["Id"] for c in inspect(ids) if c["State"]["Running"]], r.returncode


def one_shots(base):
    r = v1(base, "config", capture=True)
    doc = yaml.safe_load(r.stdout or "{}") or {}
    names = set()
    for svc in (doc.get("services") or {}).values():
        dep = svc.get("depends_on") or {}
        if isinstance(dep, dict):
            for name, cond in dep.items():
                if (cond or {}).get("condition") == "service_completed_successfully":
                    names.add(name)
    return names


def wait(base, timeout):
    deadline = time.monotonic() + timeout
    completed_ok = one_shots(base)
    while True:
        ids, _ = project_ids(base)
        pending, failed = [], []
        for c in inspect(ids):
            svc = c["Config"]["Labels"].get("com.docker.compose.service", c["Name"])
            st = c["State"]
            if st["Running"]:
                health = (st.get("Health") or {}).get("Status")
                if health == "unhealthy":
                    failed.append(f"container for service {svc} is unhealthy")
                elif health not in (None, "healthy"):
                    pending.append(svc)
            elif st["Status"] in ("created", "restarting"):
                pending.append(svc)
            elif not (st["ExitCode"] == 0 and svc in completed_ok):
                failed.append(f"container for service {svc} exited ({st['ExitCode']})")
        if failed:
            die("; ".join(failed))
        if not pending:
            return 0
        if time.monotonic() > deadline:
            die(f"timeout waiting for: {', '.join(sorted(set(pending)))}")
        time.sleep(1)


def cmd_up(base, args):
    args = split_short_flags(args)
    wait_flag, timeout, out, pull = False, None, [], None
    i = 0
    while i < len(args):
        a = args[i]
        key = a.split("=", 1)[0]
        if key == "--wait":
            wait_flag = True
        elif key == "--wait-timeout":
            timeout = int(a.split("=", 1)[1] if "=" in a else args[i + 1])
            i += 0 if "=" in a else 1
        elif key in UP_DROP:
            if UP_DROP[key]:
                v = a.split("=", 1)[1] if "=" in a else args[i + 1]
                i += 0 if "=" in a else 1
                if key == "--pull":
                    pull = v
        else:
            out.append(a)
        i += 1
    if wait_flag and "-d" not in out and "--detach" not in out:
        out.insert(0, "-d")
    services = [a for a in out if not a.startswith("-")]
    if pull == "always":
        rc = v1(base, "pull", *services).returncode
        if rc:
            return rc
    rc = v1(base, "up", *out).returncode
    if rc or not wait_flag:
        return rc
    return wait(base, timeout if timeout is not None else 600)


def split_short_flags(args):
    """-aq -> -a -q (v2 accepts combined short flags)."""
    out = []
    for a in args:
        if len(a) > 2 and a[0] == "-" and a[1] != "-" and a[1:].isalpha():
            out += [f"-{c}" for c in a[1:]]
        else:
            out.append(a)
    return out


def cmd_ps(base, args):
    args = split_short_flags(args)
    quiet = "-q" in args or "--quiet" in args
    all_ = "-a" in args or "--all" in args
    fmt = None
    services = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--format",):
            fmt = args[i + 1]
            i += 1
        elif a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a in ("--services",):
            r = v1(base, "config", "--services", capture=True)
            sys.stdout.write(r.stdout)
            return r.returncode
        elif a.startswith("--status"):
            die("ps --status is not supported by the shim")
        elif not a.startswith("-"):
            services.append(a)
        i += 1
    ids = []
    for s in services or [None]:
        got, rc = project_ids(base, s, all_)
        if rc:
            return rc
        ids += got
    if quiet:
        for c in ids:
            print(c)
        return 0
    rows = []
    for c in inspect(ids):
        labels = c["Config"]["Labels"]
        rows.append({"ID": c["Id"][:12], "Name": c["Name"].lstrip("/"),
                     "Service": labels.get("com.docker.compose.service", ""),
                     "Project": labels.get("com.docker.compose.project", ""),
                     "State": c["State"]["Status"],
                     "Health": (c["State"].get("Health") or {}).get("Status", ""),
                     "ExitCode": c["State"]["ExitCode"], "Image": c["Config"]["Image"]})
    if fmt == "json":
        for row in rows:
            print(json.dumps(row))
        return 0
    print("NAME\tSERVICE\tSTATE\tHEALTH")
    for row in rows:
        print(f"{row['Name']}\t{row['Service']}\t{row['State']}\t{row['Health']}")
    return 0


def main(argv):
    if argv[:1] == ["docker-cli-plugin-metadata"]:
        metadata()
        return 0
    if argv[:1] == ["compose"]:
        argv = argv[1:]
    if argv[:1] in (["--version"], ["-v"]):
        argv = ["version"]
    opts, rest = parse_global(argv)
    if not rest:
        die("usage: docker compose [OPTIONS] COMMAND", 1)
    sub, args = rest[0], rest[1:]
    if sub == "version":
        if "--short" in args:
            print(SHIM_VERSION)
        elif "json" in args:
            print(json.dumps({"version": f"v{SHIM_VERSION}"}))
        else:
            print(f"Docker Compose version v{SHIM_VERSION} (test shim over docker-compose 1.29)")
        return 0
    base = normalise(opts)
    if sub == "up":
        return cmd_up(base, args)
    if sub == "ps":
        return cmd_ps(base, args)
    if sub == "logs" and not sys.stdout.isatty() and "--no-color" not in args:
        args = ["--no-color", *args]
    if sub == "pull":
        args = [a for a in args if a not in ("--ignore-pull-failures",)]
    if sub == "config" and ("--format" in args or any(a.startswith("--format=") for a in args)):
        die("config --format is not supported by the shim")
    return v1(base, sub, *args).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
