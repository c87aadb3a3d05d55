"""AppDsn on the throwaway server: cutover, rollback and destroy, applied by the engine stand-in.

The program runs under mocks with the test server's address and keys, limited to the
GlitchTip stack and AppDsn; tests/integration/engine.py applies it over SSH as `pulumi up`
and `pulumi destroy` would. The app is the testhost's PM2 app (real PM2 6, real dotenv and
@sentry/node); "Sentry" is the Sentry stand-in on the server's 127.0.0.1:9000, GlitchTip is
the stack's stand-in image on 127.0.0.1:8000, reached from here through the SSH tunnel.
Where an error lands is read at each end: the Sentry stand-in's request log, GlitchTip's API.

The tests share one server, one engine state and one GlitchTip project, and run in order.
`test_bench_cutover_and_rollback` (marked bench: `make bench`) prints how long it takes from
the start of the step to the app's first error at the new target.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.harness import Program
from tests.integration.apphost import (
    APP_DIR,
    APPS,
    BACKUP,
    CLEAN_STACK,
    ENV_FILE,
    FRESH_APP,
    STACK_DIR,
    Ends,
    app_environ,
    app_health,
    boom,
    file_facts,
    glitchtip_project,
    new_marker,
    only,
    pm2_apps,
    program_for,
    restart_glitchtip,
    steps_of,
    wait_until,
)
from tests.integration.engine import Engine, StepFailed, StepResult

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def host(testhost) -> Iterator:
    """The shared server: no stack of ours before or after; the app's .env and PM2 as they were."""
    testhost.ssh(CLEAN_STACK, timeout=120)
    original = testhost.read_file(ENV_FILE)
    facts = file_facts(testhost, ENV_FILE)
    yield testhost
    testhost.ssh(CLEAN_STACK, timeout=120)
    testhost.ssh(f"rm -f {BACKUP} {ENV_FILE}.glitchtip-migration.restart-pending")
    if testhost.read_file(ENV_FILE) != original:
        testhost.put_file(ENV_FILE, original, int(facts[1].split()[0], 8))
    testhost.run(FRESH_APP)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def original(host) -> tuple[bytes, str]:
    return file_facts(host, ENV_FILE)


@pytest.fixture(scope="module")
def first_up(host, engine, original) -> list[StepResult]:
    """`pulumi up` with dsnTarget sentry: the stack, then AppDsn's first apply."""
    steps = engine.up(program_for(host, "sentry"))
    assert steps_of(steps) == [("glitchtip-deploy", "create"), ("app-dsn-set", "create")]
    return steps


@pytest.fixture(scope="module")
def glitchtip(host, first_up) -> Iterator[dict]:
    """A project in the stack's GlitchTip: its DSN and a token."""
    with glitchtip_project(host, "app-dsn-test") as project:
        yield project


@pytest.fixture(scope="module")
def ends(host, glitchtip) -> Ends:
    return Ends(host, glitchtip["api"])


# ---------------------------------------------------------------------------- tests


def test_first_apply_keeps_the_app_on_sentry_and_saves_the_original(host, original, first_up, ends):
    assert file_facts(host, ENV_FILE) == original, "the first apply (target sentry) touched the .env"
    data, facts = file_facts(host, BACKUP)
    assert facts.split()[0] == "600"
    assert data.splitlines()[1:] == [f"SENTRY_DSN={host.sentry.dsn}".encode()]
    ends.lands("sentry")


def test_a_failing_gate_leaves_the_env_file_untouched(host, engine, original, glitchtip):
    pids = {name: app["pid"] for name, app in pm2_apps(host).items()}
    host.run(f"cd {STACK_DIR} && docker compose stop glitchtip </dev/null", timeout=120)
    try:
        with pytest.raises(StepFailed) as failed:
            engine.up(program_for(host, "glitchtip", glitchtip["dsn"]))
        message = failed.value.result.stderr
        assert "is not healthy" in message and "nothing on the server was changed" in message, message
        assert file_facts(host, ENV_FILE) == original
        assert {name: app["pid"] for name, app in pm2_apps(host).items()} == pids, "the app was restarted"
    finally:
        restart_glitchtip(host)


def test_cutover_sends_the_apps_next_error_to_glitchtip(host, engine, original, glitchtip, ends):
    before = pm2_apps(host)
    environs = {name: app_environ(host, app["pid"]) for name, app in before.items()}
    assert "SENTRY_DSN" not in environs["ai-admin-api"], "PM2 already holds a SENTRY_DSN: this is meant to be the clean case"
    step = only(engine.up(program_for(host, "glitchtip", glitchtip["dsn"])), "app-dsn-set", "update")
    assert "gate=passed" in step.stdout and "changed=yes" in step.stdout
    data, facts = file_facts(host, ENV_FILE)
    assert data == original[0].replace(host.sentry.dsn.encode(), glitchtip["dsn"].encode())
    assert facts.split()[:2] == original[1].split()[:2], "mode or owner changed"
    after = pm2_apps(host)
    for name, port in APPS.items():
        assert after[name]["status"] == "online" and after[name]["pid"] != before[name]["pid"]
        now = app_environ(host, after[name]["pid"])
        assert now["SENTRY_DSN"] == glitchtip["dsn"]
        assert {k: v for k, v in now.items() if k != "SENTRY_DSN"} == {k: v for k, v in environs[name].items() if k != "SENTRY_DSN"}, \
            "the restart changed the app's environment beyond SENTRY_DSN"
        ends.lands("glitchtip", port)


def test_the_same_cutover_again_changes_nothing(host, engine, glitchtip):
    program = program_for(host, "glitchtip", glitchtip["dsn"])
    env_before, pids = file_facts(host, ENV_FILE), {n: a["pid"] for n, a in pm2_apps(host).items()}
    assert engine.up(program) == [], "an unchanged program ran a step"
    rerun = only([s for s in engine.reapply() if s.urn.endswith("::app-dsn-set")], "app-dsn-set", "update")
    assert "changed=no" in rerun.stdout and "already points at glitchtip" in rerun.stderr
    assert file_facts(host, ENV_FILE) == env_before, "the .env was touched (bytes, mode, mtime or inode)"
    assert {n: a["pid"] for n, a in pm2_apps(host).items()} == pids, "the app was restarted"


def test_rollback_sends_the_apps_next_error_to_sentry(host, engine, original, ends):
    only(engine.up(program_for(host, "sentry")), "app-dsn-set", "update")
    assert file_facts(host, ENV_FILE)[0] == original[0]
    ends.lands("sentry")
    ends.lands("sentry", APPS["ai-admin-worker-v2"])


def test_cutover_when_pm2_saved_the_old_dsn(host, engine, original, glitchtip, ends):
    """testhost-notes' trap: SENTRY_DSN in PM2's saved env makes dotenv ignore the .env."""
    host.run(f"cd {APP_DIR} && pm2 delete all >/dev/null && SENTRY_DSN='{host.sentry.dsn}' pm2 start ecosystem.config.js >/dev/null && pm2 save >/dev/null")
    assert all(app_environ(host, a["pid"]).get("SENTRY_DSN") == host.sentry.dsn for a in pm2_apps(host).values())
    # The trap is real here: a hand edit of .env plus a plain restart leaves the app on Sentry.
    host.put_file(ENV_FILE, original[0].replace(host.sentry.dsn.encode(), glitchtip["dsn"].encode()), 0o600)
    host.run("pm2 restart all >/dev/null")
    health = app_health(host)
    assert health["dsnHost"] == "127.0.0.1:9000", health
    host.put_file(ENV_FILE, original[0], 0o600)

    only(engine.up(program_for(host, "glitchtip", glitchtip["dsn"])), "app-dsn-set", "update")
    assert app_health(host)["dsnHost"] == "127.0.0.1:8000"
    ends.lands("glitchtip")
    dump = host.run("cat ~/.pm2/dump.pm2").stdout
    assert glitchtip["dsn"] in dump and host.sentry.dsn not in dump, "a reboot (pm2 resurrect) would bring the old DSN back"


def test_gate_with_a_token_finds_its_test_event_through_the_api(host, engine, glitchtip):
    only(engine.up(program_for(host, "sentry")), "app-dsn-set", "update")
    step = only(engine.up(program_for(host, "glitchtip", glitchtip["dsn"], glitchtip["token"])), "app-dsn-set", "update")
    assert "visible=yes" in step.stdout
    event_id = step.stdout.split("event=")[1].split()[0]
    assert glitchtip["api"].request("GET", f"/api/0/projects/acme/ai-admin/events/{event_id}/").status == 200
    assert glitchtip["token"] not in step.stdout + step.stderr


def test_destroy_puts_the_original_env_back_before_the_stack_goes(host, engine, original, ends):
    steps = engine.destroy()
    assert steps_of(steps) == [("app-dsn-set", "delete"), ("glitchtip-deploy", "delete")]
    data, facts = file_facts(host, ENV_FILE)
    assert data == original[0], "the .env is not byte-identical to the original"
    assert facts.split()[:2] == original[1].split()[:2]
    assert "No such file" in host.ssh(f"stat {BACKUP}").stderr
    marker = new_marker("gone")  # GlitchTip is gone: only Sentry can be asked
    boom(host, marker)
    assert wait_until(lambda: ends.at_sentry(marker), 20), "after destroy the app does not report to Sentry"


# ---------------------------------------------------------------------------- benchmark


def _time_to_first_error(host, engine: Engine, program: Program, arrived: Callable[..., bool]) -> dict:
    """Run the step while the app raises an error every ~0.25 s: seconds from the step's start to the first arrival."""
    result: dict = {}
    sent: list[str] = []

    def apply() -> None:
        started = time.monotonic()
        try:
            result["steps"] = engine.up(program)
        except Exception as exc:  # noqa: BLE001 - raised below
            result["error"] = exc
        result["step_s"] = time.monotonic() - started

    t0 = time.monotonic()
    worker = threading.Thread(target=apply)
    worker.start()
    first = None
    while first is None and time.monotonic() - t0 < 60:
        sent.append(new_marker("bench"))
        host.ssh(f"curl -s --max-time 5 'http://127.0.0.1:3000/boom?marker={sent[-1]}' >/dev/null")
        if arrived(*sent):
            first = time.monotonic() - t0
        time.sleep(0.25)
    worker.join()
    if "error" in result:
        raise result["error"]
    return {"first_error_s": first, "step_s": result["step_s"], "errors_raised": len(sent)}


@pytest.mark.bench
def test_bench_cutover_and_rollback(host, engine, glitchtip, ends):
    engine.up(program_for(host, "sentry"))  # from wherever the module left it: on Sentry
    cut = _time_to_first_error(host, engine, program_for(host, "glitchtip", glitchtip["dsn"]), ends.at_glitchtip)
    back = _time_to_first_error(host, engine, program_for(host, "sentry"), ends.at_sentry)
    engine.destroy()
    print()
    for name, figures in (("cutover (sentry -> glitchtip)", cut), ("rollback (glitchtip -> sentry)", back)):
        first = f"{figures['first_error_s']:.1f} s" if figures["first_error_s"] is not None else "not within 60 s"
        print(f"{name}: the app's first error reached the new target {first} after the step started"
              f" (the step itself took {figures['step_s']:.1f} s; {figures['errors_raised']} errors raised meanwhile; goal < 10 s)")
