"""set-dsn.sh and restore-dsn.sh run for real: bash on this machine, in temp dirs, exactly the
command string Pulumi sends (components.remote.Step.render), with a fake `pm2` on PATH
(tests/unit/fake_pm2.py) and the GlitchTip stand-in for the gate.

What each .env variant must survive, byte for byte: first apply (sentry) -> cutover ->
the same cutover again (nothing changes, not even mtime) -> rollback -> destroy (the
original file back). Where node and the npm `dotenv` package are available (CI installs
them, like the app fixture's version), what dotenv reads is compared too.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from components.glitchtip.client import GlitchTipClient
from components.remote import SCRIPTS, Step
from tests.harness import SENTRY_DSN
from tests.standins.glitchtip.server import StandIn
from tests.unit import fake_pm2

ADMIN, PASSWORD = "admin@example.com", "s3cret-admin-pw"
OLD_DSN = "https://00000000000000000000000000000001@o1.ingest.sentry.io/1"
SUFFIX, PENDING = ".glitchtip-migration.orig", ".glitchtip-migration.restart-pending"
DOTENV_VERSION = "16.6.1"  # the app fixture's (tests/integration/server/app/package.json)
# Commands the scripts run whose argv is recorded (a secret must never be in one).
SHIMMED = ("awk", "python3", "node", "mktemp", "cmp", "stat", "chmod", "chown", "mv", "ln", "rm", "cat",
           "readlink", "tail", "head", "grep", "cut", "sort", "paste", "tr", "dirname", "sleep", "kill", "id")


# ------------------------------------------------------------------------------ fixtures


@dataclass
class GlitchTip:
    url: str
    dsn: str
    token: str
    api: GlitchTipClient
    standin: StandIn


@pytest.fixture(scope="module")
def glitchtip() -> Iterator[GlitchTip]:
    standin = StandIn(bad_key_block_seconds=0.2)
    standin.create_superuser(ADMIN, PASSWORD)
    standin.start()
    token = GlitchTipClient.login_session(standin.url, ADMIN, PASSWORD).create_api_token("t")["token"]
    api = GlitchTipClient(standin.url, token)
    api.create_organization("Acme")
    api.create_team("acme", "backend")
    api.create_project("acme", "backend", "ai-admin", "node")
    dsn = api.keys("acme", "ai-admin")[0]["dsn"]["public"]
    yield GlitchTip(standin.url, dsn, token, api, standin)
    standin.stop()


@dataclass
class Server:
    """A fake server: the app's dir with its .env, PM2 (fake) running its processes."""

    root: Path
    env_file: Path
    path: str
    glitchtip: GlitchTip
    extra_env: dict

    @property
    def app_dir(self) -> Path:
        return self.env_file.parent

    @property
    def backup(self) -> Path:
        return Path(f"{self.env_file}{SUFFIX}")

    def run(self, script: str, args: tuple[str, ...], stdin: str = "") -> subprocess.CompletedProcess:
        env = {"PATH": self.path, "HOME": str(self.root / "home"), "LANG": "C.UTF-8",
               "PM2_HOME": str(self.root / "pm2"), "ARGV_LOG": str(self.root / "argv.log"), **self.extra_env}
        return subprocess.run(["bash", "-c", Step(script, args).render()], input=stdin, env=env,
                              capture_output=True, text=True, timeout=120)

    def set(self, target: str, dsn: str | None = None, *, sentry: str = SENTRY_DSN, token: str = "",
            apps: str = "", command: str = "", url: str | None = None) -> subprocess.CompletedProcess:
        dsn = dsn or (self.glitchtip.dsn if target == "glitchtip" else sentry)
        stdin = f"DSN={dsn}\nSENTRY_DSN={sentry}\n" + (f"API_TOKEN={token}\n" if token else "")
        return self.run("set-dsn.sh", (str(self.env_file), target, url or self.glitchtip.url, apps, command), stdin)

    def restore(self, apps: str = "", command: str = "") -> subprocess.CompletedProcess:
        return self.run("restore-dsn.sh", (str(self.env_file), apps, command))

    def state(self) -> dict:
        return json.loads((self.root / "pm2-state.json").read_text())

    def write_state(self, state: dict) -> None:
        (self.root / "pm2-state.json").write_text(json.dumps(state))

    def proc(self, name: str) -> dict:
        return next(p for p in self.state()["procs"] if p["name"] == name)

    def update_proc(self, name: str, **changes) -> None:
        state = self.state()
        next(p for p in state["procs"] if p["name"] == name).update(changes)
        self.write_state(state)

    def pm2_calls(self, command: str | None = None) -> list[dict]:
        log = self.root / "pm2.log"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [c for c in calls if command is None or (c["argv"] and c["argv"][0] == command)]

    def argv_log(self) -> str:
        log = self.root / "argv.log"
        return log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture
def server(tmp_path: Path, glitchtip: GlitchTip) -> Server:
    app = tmp_path / "opt" / "ai-admin"
    app.mkdir(parents=True)
    (tmp_path / "home").mkdir()
    env_file = app / ".env"
    env_file.write_text(f"# ai-admin\nNODE_ENV=production\nSENTRY_DSN={SENTRY_DSN}\nPORT=3000\n")
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in SHIMMED:
        real = shutil.which(name)
        assert real, f"{name} is missing on this machine"
        shim = shims / name
        shim.write_text(f'#!/bin/bash\nprintf "%s\\0" {name} "$@" >>"${{ARGV_LOG:-/dev/null}}"; printf "\\n" >>"${{ARGV_LOG:-/dev/null}}"\nexec {real} "$@"\n')
        shim.chmod(0o755)
    fake_pm2.install(tmp_path / "bin", tmp_path / "pm2-state.json", tmp_path / "pm2.log", tmp_path / "pm2")
    path = f"{shims}:{tmp_path / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    app_env = {"PATH": path, "HOME": "/home/app", "NODE_ENV": "production"}
    procs = [
        fake_pm2.process(0, "ai-admin-api", str(app), app_env),
        fake_pm2.process(1, "ai-admin-worker-v2", str(app), app_env),
        fake_pm2.process(2, "unrelated", str(tmp_path / "elsewhere"), app_env),
    ]
    (tmp_path / "pm2-state.json").write_text(json.dumps({"procs": procs}))
    return Server(tmp_path, env_file, path, glitchtip, {"ONLINE_SECONDS": "4", "STABLE_MS": "200", "VISIBLE_SECONDS": "2"})


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def failed(result: subprocess.CompletedProcess, message: str) -> subprocess.CompletedProcess:
    assert result.returncode != 0, f"succeeded but should have failed\n{result.stdout}\n{result.stderr}"
    assert message in result.stderr, result.stderr
    return result


def snapshot(path: Path) -> tuple:
    st = path.stat()
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ino


# --------------------------------------------------------------------- node + npm dotenv


@pytest.fixture(scope="session")
def dotenv_parse():
    """parse(list of paths) -> list of dicts, by the real npm dotenv; skipped (failed in CI) without node/npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glitchtip-migration" / f"dotenv-{DOTENV_VERSION}"
    module = cache / "node_modules" / "dotenv"
    if node and npm and not module.exists():
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(cache), f"dotenv@{DOTENV_VERSION}"],
                       capture_output=True, timeout=300)
    if not (node and module.exists()):
        reason = f"node and npm's dotenv@{DOTENV_VERSION} are needed to compare with what dotenv reads"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    program = ("const d = require(process.argv[1]); const fs = require('fs');"
               "console.log(JSON.stringify(process.argv.slice(2).map((f) => d.parse(fs.readFileSync(f)))))")

    def parse(paths: list[Path]) -> list[dict]:
        out = subprocess.run([node, "-e", program, str(module), *map(str, paths)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    return parse


# ------------------------------------------------------------------ the .env variants

S = SENTRY_DSN
# name: (original file, the file once it points at DSN {D})
VARIANTS: dict[str, tuple[str, str]] = {
    "plain": ("# ai-admin\nNODE_ENV=production\nSENTRY_DSN={S}\nPORT=3000\n", "# ai-admin\nNODE_ENV=production\nSENTRY_DSN={D}\nPORT=3000\n"),
    "crlf": ("# ai-admin\r\nNODE_ENV=production\r\nSENTRY_DSN={S}\r\nPORT=3000\r\n", "# ai-admin\r\nNODE_ENV=production\r\nSENTRY_DSN={D}\r\nPORT=3000\r\n"),
    "export": ("export NODE_ENV=production\nexport SENTRY_DSN={S}\n", "export NODE_ENV=production\nexport SENTRY_DSN={D}\n"),
    "double_quoted_with_comment": ('A=1\nSENTRY_DSN="{S}" # prod, do not touch\n\nB="x"\n', 'A=1\nSENTRY_DSN="{D}" # prod, do not touch\n\nB="x"\n'),
    "single_quoted": ("SENTRY_DSN='{S}'\nLOG_LEVEL=info\n", "SENTRY_DSN='{D}'\nLOG_LEVEL=info\n"),
    "spaces_and_comment": ("  SENTRY_DSN =\t{S}   # where errors go\n", "  SENTRY_DSN =\t{D}   # where errors go\n"),
    "colon_syntax": ("SENTRY_DSN: {S}\n", "SENTRY_DSN: {D}\n"),
    "empty_value": ("SENTRY_DSN=\nA=1\n", "SENTRY_DSN={D}\nA=1\n"),
    "no_trailing_newline": ("A=1\nSENTRY_DSN={S}", "A=1\nSENTRY_DSN={D}"),
    "crlf_no_trailing_newline": ("A=1\r\nexport SENTRY_DSN=\"{S}\"", "A=1\r\nexport SENTRY_DSN=\"{D}\""),
    "missing": ("NODE_ENV=production\nPORT=3000\n", "NODE_ENV=production\nPORT=3000\nSENTRY_DSN={D}\n"),
    "missing_no_trailing_newline": ("NODE_ENV=production\nPORT=3000", "NODE_ENV=production\nPORT=3000\nSENTRY_DSN={D}\n"),
    "missing_crlf_no_trailing_newline": ("A=1\r\nB=2", "A=1\r\nB=2\r\nSENTRY_DSN={D}\r\n"),
    "empty_file": ("", "SENTRY_DSN={D}\n"),
    # dotenv takes the LAST assignment; every assignment is replaced so any reader agrees.
    "duplicates": (f"SENTRY_DSN={OLD_DSN}\nA=1\nSENTRY_DSN='{{S}}'\n", "SENTRY_DSN={D}\nA=1\nSENTRY_DSN='{D}'\n"),
    "substring_keys": (
        "SENTRY_DSN_OLD=https://11111111111111111111111111111111@o1.ingest.sentry.io/2\nMY_SENTRY_DSN=x\n"
        "#SENTRY_DSN=commented-out\nOTHER=SENTRY_DSN=not-a-key\nSENTRY_DSN={S}\nSENTRY_DSN_NEW=y\n",
        "SENTRY_DSN_OLD=https://11111111111111111111111111111111@o1.ingest.sentry.io/2\nMY_SENTRY_DSN=x\n"
        "#SENTRY_DSN=commented-out\nOTHER=SENTRY_DSN=not-a-key\nSENTRY_DSN={D}\nSENTRY_DSN_NEW=y\n",
    ),
    "inside_a_multiline_value": (
        'PRIVATE_KEY="-----BEGIN KEY-----\nSENTRY_DSN=part-of-the-key\n-----END KEY-----"\nSENTRY_DSN={S}\n',
        'PRIVATE_KEY="-----BEGIN KEY-----\nSENTRY_DSN=part-of-the-key\n-----END KEY-----"\nSENTRY_DSN={D}\n',
    ),
    "odd_bytes": ("API_TOKEN=\"abc#123$notavar\"\nX=\xe9t\xe9\n\nSENTRY_DSN={S}\n\n\n", "API_TOKEN=\"abc#123$notavar\"\nX=\xe9t\xe9\n\nSENTRY_DSN={D}\n\n\n"),
}


def render(template: str, dsn: str = "") -> bytes:
    return template.replace("{S}", S).replace("{D}", dsn).encode("latin-1")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cutover_rollback_destroy_keeps_every_other_byte(server: Server, variant: str, glitchtip: GlitchTip, dotenv_parse):
    original_t, target_t = VARIANTS[variant]
    original = render(original_t)
    env = server.env_file
    env.write_bytes(original)
    env.chmod(0o640)
    os.chown(env, 1234, 2345)
    G = glitchtip.dsn

    def check(expected: bytes, step: str) -> None:
        data, mode, uid, gid, *_ = snapshot(env)
        assert data == expected, f"{step}: {data!r}"
        assert (mode, uid, gid) == (0o640, 1234, 2345), f"{step} changed mode or owner"

    # First apply, target sentry: the backup of the original line(s) is taken.
    ok(server.set("sentry"))
    check(render(target_t, S), "first apply")
    backup = snapshot(server.backup)
    assert backup[1] == 0o600
    lines, cut_over = original.split(b"\n"), render(target_t, G).split(b"\n")
    replaced = [a for a, b in zip(lines, cut_over) if a != b] if len(lines) == len(cut_over) else []
    assert backup[0].split(b"\n")[1:-1] == replaced, "the backup does not hold exactly the original SENTRY_DSN line(s)"

    # Cutover.
    restarts = len(server.pm2_calls("restart"))
    out = ok(server.set("glitchtip")).stdout
    assert "changed=yes" in out and "gate=passed" in out
    check(render(target_t, G), "cutover")
    assert len(server.pm2_calls("restart")) == restarts + 1
    (server.root / "orig").write_bytes(original)
    before, after = dotenv_parse([server.root / "orig", env])
    assert after == {**before, "SENTRY_DSN": G}, "dotenv reads something else than the original plus the new DSN"

    # The same cutover again: nothing changes, not even mtime; no restart.
    first = snapshot(env)
    out = ok(server.set("glitchtip")).stdout
    assert "changed=no" in out
    assert snapshot(env) == first, "a second apply touched the file"
    assert len(server.pm2_calls("restart")) == restarts + 1, "a second apply restarted the app"

    # Rollback.
    ok(server.set("sentry"))
    check(render(target_t, S), "rollback")
    assert snapshot(server.backup) == backup, "the backup was rewritten"

    # Destroy: the original file, byte for byte; the backup is gone.
    out = ok(server.restore()).stdout
    assert "restored=yes" in out
    check(original, "restore")
    assert not server.backup.exists()
    assert "restored=no" in ok(server.restore()).stdout, "a second destroy did something"
    check(original, "second restore")


def test_restore_straight_after_cutover(server: Server, glitchtip: GlitchTip):
    original = server.env_file.read_bytes()
    ok(server.set("glitchtip"))
    assert server.proc("ai-admin-api")["env"]["SENTRY_DSN"] == glitchtip.dsn
    ok(server.restore())
    assert server.env_file.read_bytes() == original
    assert server.proc("ai-admin-api")["env"]["SENTRY_DSN"] == SENTRY_DSN, "the app was not restarted with the original DSN"


def test_a_lost_backup_is_not_replaced_by_the_cutover_line(server: Server, glitchtip: GlitchTip):
    ok(server.set("glitchtip"))
    server.backup.unlink()  # what the app uses now is GlitchTip's DSN, not the original
    before = snapshot(server.env_file)
    failed(server.set("sentry"), "is not the configured sentryDsn")
    assert snapshot(server.env_file) == before and not server.backup.exists()


# ------------------------------------------------------------------------------ PM2


def test_restart_puts_the_new_dsn_in_effect_although_pm2_cached_the_old_one(server: Server, glitchtip: GlitchTip):
    # The testhost-notes trap: SENTRY_DSN is in PM2's saved env, so dotenv would not override it.
    for name in ("ai-admin-api", "ai-admin-worker-v2"):
        server.update_proc(name, env={**server.proc(name)["env"], "SENTRY_DSN": SENTRY_DSN})
    before = {p["name"]: dict(p["env"]) for p in server.state()["procs"]}
    ok(server.set("glitchtip"))
    restart = server.pm2_calls("restart")[-1]
    assert restart["argv"][-1] == "--update-env" and sorted(restart["argv"][1:-1]) == ["0", "1"]
    assert set(restart["env"]) <= {"PATH", "HOME", "PM2_HOME", "SENTRY_DSN"}, f"pm2 got the session's environment: {sorted(restart['env'])}"
    assert restart["env"]["SENTRY_DSN"] == glitchtip.dsn
    for name in ("ai-admin-api", "ai-admin-worker-v2"):
        after = server.proc(name)["env"]
        assert after["SENTRY_DSN"] == glitchtip.dsn
        assert {k: v for k, v in after.items() if k not in ("SENTRY_DSN", "PM2_HOME")} == {
            k: v for k, v in before[name].items() if k != "SENTRY_DSN"}, "the restart changed the app's environment beyond SENTRY_DSN"
    assert server.proc("unrelated")["restarts"] == 0, "a process in another directory was restarted"


def test_app_names_select_the_processes(server: Server, glitchtip: GlitchTip):
    ok(server.set("glitchtip", apps="ai-admin-api"))
    assert server.proc("ai-admin-api")["restarts"] == 1
    assert server.proc("ai-admin-worker-v2")["restarts"] == 0


def test_unknown_app_name_fails_before_anything_changes(server: Server, glitchtip: GlitchTip):
    before = snapshot(server.env_file)
    failed(server.set("glitchtip", apps="ai-admin-api,no-such-app"), "PM2 runs no process named no-such-app")
    assert snapshot(server.env_file) == before and not server.backup.exists()
    assert not server.pm2_calls("restart")


def test_no_pm2_process_in_the_env_dir_fails_before_anything_changes(server: Server, glitchtip: GlitchTip):
    state = server.state()
    state["procs"] = [p for p in state["procs"] if p["name"] == "unrelated"]
    server.write_state(state)
    before = snapshot(server.env_file)
    failed(server.set("glitchtip"), f"PM2 runs no process in {server.app_dir}")
    assert snapshot(server.env_file) == before and not server.backup.exists()


def test_pm2_not_running_fails_before_anything_changes(server: Server, glitchtip: GlitchTip):
    (server.root / "pm2" / "pm2.pid").write_text("999999999")
    before = snapshot(server.env_file)
    failed(server.set("glitchtip"), "PM2 is not running")
    assert snapshot(server.env_file) == before


def test_an_app_that_does_not_come_back_fails_the_step_by_name_and_is_retried(server: Server, glitchtip: GlitchTip):
    server.update_proc("ai-admin-worker-v2", crash=True)
    failed(server.set("glitchtip"), "not online 4s after the restart: ai-admin-worker-v2 (errored)")
    assert Path(f"{server.env_file}{PENDING}").exists()
    server.update_proc("ai-admin-worker-v2", crash=False)
    out = ok(server.set("glitchtip")).stdout  # the file is already edited: the restart is what is retried
    assert "changed=no" in out and "ai-admin-worker-v2" in out
    assert server.proc("ai-admin-worker-v2")["status"] == "online"
    assert not Path(f"{server.env_file}{PENDING}").exists()
    assert "changed=no restarted=\n" in ok(server.set("glitchtip")).stdout


def test_a_crash_looping_app_fails_the_step(server: Server, glitchtip: GlitchTip):
    server.update_proc("ai-admin-api", flap=True)
    failed(server.set("glitchtip"), "restarting again and again")


def test_pm2_save_when_the_dump_would_bring_the_old_dsn_back(server: Server, glitchtip: GlitchTip):
    dump = server.root / "pm2" / "dump.pm2"
    # `pm2 save` writes pm2_env objects without their pm_id.
    dump.write_text(json.dumps([{"name": "ai-admin-api", "env": {"SENTRY_DSN": SENTRY_DSN}}]))
    ok(server.set("glitchtip"))
    assert len(server.pm2_calls("save")) == 1
    assert glitchtip.dsn in dump.read_text()


def test_no_pm2_save_when_the_dump_holds_no_dsn(server: Server, glitchtip: GlitchTip):
    (server.root / "pm2" / "dump.pm2").write_text(json.dumps([{"name": "ai-admin-api", "env": {"A": "1"}}]))
    ok(server.set("glitchtip"))
    assert not server.pm2_calls("save")


def test_app_restart_command_runs_in_the_env_dir_instead_of_pm2(server: Server, glitchtip: GlitchTip):
    ok(server.set("glitchtip", command="pwd > restarted-by-command"))
    assert (server.app_dir / "restarted-by-command").read_text().strip() == str(server.app_dir)
    assert not server.pm2_calls("restart")


def test_app_restart_command_that_leaves_the_cached_dsn_fails(server: Server, glitchtip: GlitchTip):
    server.update_proc("ai-admin-api", env={**server.proc("ai-admin-api")["env"], "SENTRY_DSN": SENTRY_DSN})
    failed(server.set("glitchtip", command="true"), "PM2 still holds another SENTRY_DSN for ai-admin-api")


def test_failing_app_restart_command_fails_the_step(server: Server, glitchtip: GlitchTip):
    failed(server.set("glitchtip", command="exit 3"), "appRestartCommand failed")


# ------------------------------------------------------------------------------ the gate


def test_gate_unhealthy_glitchtip_changes_nothing(server: Server, glitchtip: GlitchTip):
    before = snapshot(server.env_file)
    failed(server.set("glitchtip", url="http://127.0.0.1:9"), "is not healthy")
    assert snapshot(server.env_file) == before and not server.backup.exists() and not server.pm2_calls("restart")


def test_gate_wrong_key_changes_nothing(server: Server, glitchtip: GlitchTip):
    parts = urlsplit(glitchtip.dsn)
    wrong = glitchtip.dsn.replace(parts.username, "f" * 32)
    before = snapshot(server.env_file)
    failed(server.set("glitchtip", wrong), "got HTTP 403")
    assert snapshot(server.env_file) == before and not server.backup.exists()


def test_gate_with_a_token_finds_the_test_event_through_the_api(server: Server, glitchtip: GlitchTip):
    out = ok(server.set("glitchtip", token=glitchtip.token)).stdout
    event_id = out.split("event=")[1].split()[0]
    assert "visible=yes" in out
    event = glitchtip.api.request("GET", f"/api/0/projects/acme/ai-admin/events/{event_id}/").body
    assert "glitchtip-migration cutover check" in json.dumps(event)


def test_gate_acknowledged_but_invisible_event_changes_nothing(server: Server, glitchtip: GlitchTip):
    urllib.request.urlopen(urllib.request.Request(glitchtip.url + "/_standin/drop-next-event", data=b"{}", method="POST"))
    before = snapshot(server.env_file)
    failed(server.set("glitchtip", token=glitchtip.token), "is not visible in acme/ai-admin after 2 s")
    assert snapshot(server.env_file) == before and not server.backup.exists()


def test_gate_token_of_another_glitchtip_changes_nothing(server: Server, glitchtip: GlitchTip):
    other = glitchtip.dsn.rsplit("/", 1)[0] + "/999"
    failed(server.set("glitchtip", other, token=glitchtip.token), "HTTP 403")
    before = snapshot(server.env_file)
    failed(server.set("glitchtip", token="notavalidtoken"), "is API_TOKEN valid?")
    assert snapshot(server.env_file) == before


def test_rollback_to_sentry_needs_no_gate(server: Server, glitchtip: GlitchTip):
    ok(server.set("glitchtip"))
    ok(server.set("sentry", url="http://127.0.0.1:9"))
    assert f"SENTRY_DSN={SENTRY_DSN}\n".encode() in server.env_file.read_bytes()


# ------------------------------------------------------------------------------ refusals


def test_refuses_when_the_app_does_not_use_the_configured_sentry_dsn(server: Server, glitchtip: GlitchTip):
    server.env_file.write_text(f"SENTRY_DSN={OLD_DSN}\n")
    before = snapshot(server.env_file)
    failed(server.set("glitchtip"), "is not the configured sentryDsn")
    assert snapshot(server.env_file) == before and not server.backup.exists()


@pytest.mark.parametrize("dsn", [f'{SENTRY_DSN}"', f"{SENTRY_DSN} #x", f"{SENTRY_DSN}$HOME", "not-a-dsn"])
def test_refuses_a_dsn_that_could_break_the_file(server: Server, dsn: str):
    before = snapshot(server.env_file)
    failed(server.set("sentry", dsn), "DSN is not a DSN")
    assert snapshot(server.env_file) == before


def test_refuses_a_sentry_dsn_spanning_lines(server: Server):
    server.env_file.write_text(f'SENTRY_DSN="{SENTRY_DSN}\n"\n')
    before = snapshot(server.env_file)
    failed(server.set("sentry"), "has a value spanning several lines")
    assert snapshot(server.env_file) == before


def test_refuses_to_append_where_dotenv_would_swallow_the_line(server: Server):
    server.env_file.write_text("A=1\nLAST:")  # "KEY:" + line break takes the next line as its value
    before = snapshot(server.env_file)
    failed(server.set("sentry"), "would not take effect")
    assert snapshot(server.env_file) == before


def test_missing_env_file(server: Server):
    server.env_file.unlink()
    failed(server.set("sentry"), "does not exist or is not a regular file")


def test_a_symlinked_env_file_stays_a_link(server: Server, glitchtip: GlitchTip):
    shared = server.root / "shared.env"
    server.env_file.rename(shared)
    server.env_file.symlink_to(shared)
    original = shared.read_bytes()
    ok(server.set("glitchtip"))
    assert server.env_file.is_symlink() and glitchtip.dsn.encode() in shared.read_bytes()
    ok(server.restore())
    assert server.env_file.is_symlink() and shared.read_bytes() == original


def test_restore_refuses_when_the_dsn_lines_changed_meanwhile(server: Server, glitchtip: GlitchTip):
    ok(server.set("glitchtip"))
    with server.env_file.open("a") as f:
        f.write(f"SENTRY_DSN={OLD_DSN}\n")  # someone added another one by hand
    before = snapshot(server.env_file)
    failed(server.restore(), "put the original back by hand")
    assert snapshot(server.env_file) == before and server.backup.exists()


def test_destroy_after_the_app_is_gone_does_not_fail(server: Server, glitchtip: GlitchTip):
    ok(server.set("glitchtip"))
    server.env_file.unlink()
    assert "restored=no" in ok(server.restore()).stdout
    assert server.backup.exists(), "the original line(s) were thrown away"


def test_restore_without_a_backup_changes_nothing(server: Server):
    before = snapshot(server.env_file)
    assert "restored=no" in ok(server.restore()).stdout
    assert snapshot(server.env_file) == before and not server.pm2_calls("restart")


# ------------------------------------------------------------------------------ secrets


def test_no_dsn_or_token_in_any_argv_log_or_stdout(server: Server, glitchtip: GlitchTip):
    results = [
        server.set("sentry"),
        server.set("glitchtip", token=glitchtip.token),
        server.set("glitchtip", token=glitchtip.token),
        server.set("sentry"),
        server.restore(),
    ]
    for r in results:
        ok(r)
    argv = server.argv_log() + json.dumps([c["argv"] for c in server.pm2_calls()])
    assert "awk" in argv and "node" in argv and "python3" in argv, "the argv log recorded nothing"
    needles = [urlsplit(SENTRY_DSN).username, urlsplit(glitchtip.dsn).username, glitchtip.token]
    for needle in needles:
        assert needle not in argv, "a secret reached a command line"
        for r in results:
            assert needle not in r.stdout and needle not in r.stderr, "a secret reached the output"


# ------------------------------------------------------------------------- dotenv fidelity


def test_dotenv_takes_the_last_assignment_and_so_does_the_parser(tmp_path: Path, dotenv_parse):
    """The duplicate rule, checked against the real package: the LAST SENTRY_DSN wins (set-dsn.sh rewrites them all)."""
    f = tmp_path / ".env"
    f.write_text(f"SENTRY_DSN={OLD_DSN}\nA=1\nexport SENTRY_DSN='{SENTRY_DSN}'\n")
    assert dotenv_parse([f])[0]["SENTRY_DSN"] == SENTRY_DSN
    read = subprocess.run(["bash", "-c", f"source {SCRIPTS}/lib.sh; source {SCRIPTS}/app-env.sh; dotenv value \"$1\"", "t", str(f)],
                          capture_output=True, text=True, check=True)
    assert read.stdout == SENTRY_DSN


def _random_env(rnd: random.Random) -> bytes:
    keys = ["SENTRY_DSN", "SENTRY_DSN", "SENTRY_DSN_OLD", "A", "MY_SENTRY_DSN", "export", "SENTRY_DSN.x"]
    prefixes = ["", "export ", "  ", "\t", "#", "# "]
    seps = ["=", " = ", "= ", ": ", ":", "\t=\t"]
    values = [S, "", "'q'", '"dq"', "`bt`", "'a#b'", '"x" # c', "bare # c", "v#frag", '"unterminated', "'open",
              '"esc\\"q"', '"a\\"', "  sp  ", '"ml', 'end"', "'x' y", '"a" "b"', "#c", "'it\\'s'"]
    others = ["# comment", "", "   ", "garbage line", 'B="multi', "SENTRY_DSN=inside", 'line"', "K=`x", "y`"]
    lines = [rnd.choice(others) if rnd.random() < 0.3 else rnd.choice(prefixes) + rnd.choice(keys) + rnd.choice(seps) + rnd.choice(values)
             for _ in range(rnd.randint(0, 7))]
    eol = rnd.choice(["\n", "\r\n"])
    return (eol.join(lines) + (eol if lines and rnd.random() < 0.7 else "")).encode()


def test_the_parser_reads_like_dotenv_on_random_files(tmp_path: Path, dotenv_parse):
    """The awk reading of app-env.sh against the real dotenv, on 150 random files built from tricky pieces:
    the value it finds, what dotenv reads after `set`, and `restore` giving the file back."""
    rnd = random.Random(20261204)
    files = []
    for i in range(150):
        f = tmp_path / f"f{i:03d}"
        f.write_bytes(_random_env(rnd))
        files.append(f)
    new_dsn = "https://22222222222222222222222222222222@o2.ingest.sentry.io/2"
    # One bash for all files: f.value (+ f.rc), f.new, f.newvalue, f.restored.
    driver = f"""source {SCRIPTS}/lib.sh; source {SCRIPTS}/app-env.sh
    for f in "$@"; do
      rc=0; dotenv value "$f" >"$f.value" 2>"$f.err" || rc=$?; echo "$rc" >"$f.rc"
      [ "$rc" -le 3 ] && [ "$rc" -ne 1 ] && [ "$rc" -ne 2 ] || continue
      printf '%s\\n' '{new_dsn}' | dotenv set "$f" >"$f.new"
      dotenv value "$f.new" >"$f.newvalue" || true
      dotenv backup "$f" | dotenv restore "$f.new" >"$f.restored"
    done"""
    subprocess.run(["bash", "-c", driver, "driver", *map(str, files)], check=True, capture_output=True, timeout=300)
    usable = []
    for f in files:
        rc = int(Path(f"{f}.rc").read_text())
        if rc == 2:
            assert "spanning several lines" in Path(f"{f}.err").read_text(), f.read_bytes()
            continue  # set-dsn.sh refuses these
        assert rc in (0, 3), Path(f"{f}.err").read_text()
        if Path(f"{f}.newvalue").read_text() == new_dsn:  # else set-dsn.sh refuses ("would not take effect")
            usable.append(f)
    wanted = dict(zip(files, dotenv_parse(files)))
    got_after = dict(zip(usable, dotenv_parse([Path(f"{f}.new") for f in usable])))
    for f in files:
        rc = int(Path(f"{f}.rc").read_text())
        if rc in (0, 3):
            value = Path(f"{f}.value").read_text() if rc == 0 else None
            assert value == wanted[f].get("SENTRY_DSN"), f"reads {value!r} in {f.read_bytes()!r}"
    for f in usable:
        assert got_after[f] == {**wanted[f], "SENTRY_DSN": new_dsn}, f.read_bytes()
        assert Path(f"{f}.restored").read_bytes() == f.read_bytes(), f.read_bytes()
    assert len(usable) > 120
