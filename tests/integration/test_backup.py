"""BackupJob on the throwaway server: real Postgres, seeded data, backups that restore.

The stack is deployed and BackupJob installed with the program's own registered commands
(create + stdin over SSH, as pulumi-command runs them). Then backup.sh and restore.sh run
for real: a backup, a `restore.sh --verify` into a scratch Postgres, a full restore after
rows were deleted, and the faults: a full disk (a small tmpfs mounted as the backup dir),
a concurrent run, a pg_dump that fails, retention of fake old sets, a failing off-site
copy. One test waits for cron to run the job at the next minute boundary. Postgres is
Debian's 15 under the postgres:18.1 name and GlitchTip is the stand-in
(tests/standins/glitchtip, real table names): what this proves is the scripts and the
data's round trip, not GlitchTip's own migrations.

The tests share one server and run in order (each leaves the stack up and the job installed).
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from components.remote import parse_command
from tests.harness import ROOT, Program
from tests.integration.programs import server_program
from tests.integration import testhost as th
from tests.integration.engine import Engine

pytestmark = pytest.mark.integration

PROJECT = "glitchtip"
DIR = "/opt/glitchtip"
BACKUPS = "/var/backups/glitchtip"
BACKUP = f"{DIR}/bin/backup.sh"
RESTORE = f"{DIR}/bin/restore.sh"
CRON_FILE = "/etc/cron.d/glitchtip-backup"
LOG = "/var/log/glitchtip-backup.log"
LOCK = "/run/lock/glitchtip-backup.lock"
MAIN_TABLES = ("users_user", "organizations_ext_organization", "projects_project", "issue_events_issue", "issue_events_issueevent")
SET_NAME = re.compile(r"^glitchtip-\d{8}T\d{6}Z(-final)?$")
SEED = """
INSERT INTO organizations_ext_organization(data) SELECT jsonb_build_object('name', 'org' || g) FROM generate_series(1, 2) g;
INSERT INTO projects_project(data) SELECT jsonb_build_object('name', 'project' || g) FROM generate_series(1, 3) g;
INSERT INTO issue_events_issue(data) SELECT jsonb_build_object('title', 'Error ' || md5(g::text)) FROM generate_series(1, 400) g;
INSERT INTO issue_events_issueevent(data)
  SELECT jsonb_build_object('message', md5(g::text), 'stack', repeat(md5((g * 7)::text), 4)) FROM generate_series(1, 12000) g;
"""


# ---------------------------------------------------------------------------- helpers


def sh(host, cmd: str, timeout: float = 300):
    return host.ssh(cmd, timeout=timeout)


def psql(host, sql: str) -> str:
    return host.run(f"cd {DIR} && docker compose exec -T postgres psql -X -q -A -t -v ON_ERROR_STOP=1 -U glitchtip -d glitchtip",
                    stdin=sql).stdout


def db_counts(host) -> dict[str, int]:
    out = psql(host, " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in MAIN_TABLES) + ";")
    return {t: int(n) for t, n in (line.split("|") for line in out.split())}


def app_counts(host) -> dict[str, int]:
    """The row counts GlitchTip (the stand-in) itself reads from the database."""
    state = json.loads(host.run("curl -fsS --max-time 10 http://127.0.0.1:8000/_standin/state").stdout)
    return {t: state["counts"][t] for t in MAIN_TABLES}


def sets(host, directory: str = BACKUPS) -> list[str]:
    """Every entry of the backup directory (temporary ones included)."""
    return sorted(host.run(f"ls -A {directory}").stdout.split())


def manifest(host, name: str, directory: str = BACKUPS) -> dict[str, str]:
    text = host.read_file(f"{directory}/{name}/manifest.txt").decode()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def intact(host, name: str, directory: str = BACKUPS) -> bool:
    return sh(host, f"cd {directory}/{name} && sha256sum --check --quiet --strict SHA256SUMS").rc == 0


def backup(host, *args: str):
    return sh(host, shlex.join([BACKUP, *args]))


def write_conf(host, path: str, **changes: str) -> str:
    """A copy of the installed backup.conf with some keys changed (tests point it elsewhere)."""
    lines = host.read_file(f"{DIR}/backup.conf").decode().splitlines()
    kept = [line for line in lines if line.split("=", 1)[0] not in changes]
    host.put_file(path, "\n".join(kept + [f"{k}={v}" for k, v in changes.items()]) + "\n", mode=0o600)
    return path


def program_for(host, **overrides) -> Program:
    """The program for the test server, limited to the stack (and its secrets) and BackupJob."""
    return server_program(host, "glitchtip", "glitchtip-backup", **overrides)


def install(host, program: Program):
    """The install step's create/update with its stdin over SSH, as pulumi-command runs it."""
    reg = program.named("glitchtip-backup-install")
    return host.ssh(reg.inputs["update"], stdin=reg.inputs["stdin"], timeout=120)


def running_services(host) -> dict[str, bool]:
    out = host.run(f"docker ps -a --filter label=com.docker.compose.project={PROJECT} "
                   "--format '{{.Label \"com.docker.compose.service\"}} {{.State}}'").stdout
    return {service: state == "running" for service, state in (line.split() for line in out.splitlines())}


def wait_until(predicate, seconds: float, what: str):
    return th.wait_until(predicate, seconds, interval=1) or pytest.fail(f"{what}: not seen within {seconds:.0f} s")


def clean(host) -> None:
    host.ssh(f"cd / && docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={PROJECT}) 2>/dev/null;"
             f" docker volume rm {PROJECT}_pg-data {PROJECT}_uploads 2>/dev/null;"
             f" rm -rf {DIR} {BACKUPS} {CRON_FILE} {LOG}*")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def host(testhost):
    clean(testhost)
    yield testhost
    clean(testhost)


@pytest.fixture(scope="module")
def program(host) -> Program:
    return program_for(host)


@pytest.fixture(scope="module")
def engine(host, program) -> Engine:
    """`pulumi up`: the stack's deploy step, then BackupJob's install step (it depends on the stack)."""
    engine = Engine()
    ran = engine.up(program)
    assert [step.urn.rsplit("::", 1)[1] for step in ran] == ["glitchtip-deploy", "glitchtip-backup-install"]
    return engine


@pytest.fixture(scope="module")
def seeded(host, engine):
    """The stack up, BackupJob installed, data and an upload seeded."""
    psql(host, SEED)
    host.run("docker run --rm -v glitchtip_uploads:/u --entrypoint sh busybox:1.36 -c "
             "'mkdir -p /u/attachments && head -c 65536 /dev/urandom > /u/attachments/a.bin"
             " && chown -R 5000:5000 /u/attachments'")
    counts = db_counts(host)
    assert counts["issue_events_issueevent"] == 12000 and counts["users_user"] >= 1
    return counts


@pytest.fixture(scope="module")
def first_set(host, seeded) -> str:
    result = backup(host)
    assert result.rc == 0, result.stderr
    path = result.stdout.strip()
    assert path.startswith(f"{BACKUPS}/glitchtip-"), result.stdout
    return path.rsplit("/", 1)[1]


# ---------------------------------------------------------------------------- install


def test_install_writes_the_cron_entry_and_changes_nothing_the_second_time(host, program, seeded):
    job = program.named("glitchtip-backup-install")
    facts = {p: host.run(f"stat -c '%a %U %Y %s' {p}").stdout.strip() for p in (BACKUP, RESTORE, f"{DIR}/backup.conf", CRON_FILE)}
    again = install(host, program)
    assert again.rc == 0, again.stderr
    assert again.stderr.count(" unchanged") == 4
    assert {p: host.run(f"stat -c '%a %U %Y %s' {p}").stdout.strip() for p in facts} == facts
    assert [f.split()[:2] for f in facts.values()] == [["700", "root"], ["700", "root"], ["600", "root"], ["644", "root"]]
    cron = host.read_file(CRON_FILE).decode()
    assert cron.splitlines()[-1] == f"0 2 * * * root {BACKUP} --config {DIR}/backup.conf >>{LOG} 2>&1"
    assert "%" not in cron and "PATH=/usr/local/sbin:" in cron
    assert cron == sent_cron(program), "the cron file on the server is not the one in the command (the preview's)"
    assert set(dict(line.split("=", 1) for line in job.inputs["stdin"].splitlines())) == {"HEARTBEAT_URL", "OFFSITE_COMMAND"}


# ---------------------------------------------------------------------------- backup and verify


def test_a_backup_set_is_complete_private_and_counted(host, seeded, first_set):
    listing = host.run(f"stat -c '%n %a %U' {BACKUPS}/{first_set} {BACKUPS}/{first_set}/*").stdout.split("\n")
    modes = {line.split()[0].rsplit("/", 1)[1]: line.split()[1:] for line in listing if line}
    assert modes == {first_set: ["700", "root"], "db.dump": ["600", "root"], "uploads.tar.gz": ["600", "root"],
                     "config.tar": ["600", "root"], "manifest.txt": ["600", "root"], "SHA256SUMS": ["600", "root"]}
    assert intact(host, first_set)
    found = manifest(host, first_set)
    assert {t: int(found[f"rows.{t}"]) for t in MAIN_TABLES} == seeded
    assert found["glitchtip_version"] == "6.2.6" and found["label"] == "scheduled"
    assert found["postgres_image"] == host.images["postgres"]
    assert int(found["uploads_entries"]) >= 3  # ./, attachments/, attachments/a.bin
    config = host.run(f"tar -tf {BACKUPS}/{first_set}/config.tar").stdout.split()
    assert "./compose.yaml" in config and "./.env" in config
    assert host.read_file(f"{BACKUPS}/{first_set}/db.dump")[:5] == b"PGDMP"


def test_restore_verify_reports_matching_counts_and_leaves_no_container(host, seeded, first_set):
    result = sh(host, f"{RESTORE} --verify")
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"verify: OK {first_set} restores and matches its manifest"
    for table, rows in seeded.items():
        assert re.search(rf"^{table}\s+{rows}\s+{rows}\s+ok$", result.stdout, re.M), f"{table} not confirmed:\n{result.stdout}"
    assert host.run("docker ps -aq --filter label=glitchtip-migration.role=restore-verify").stdout.strip() == ""
    assert host.run("docker volume ls -q --filter dangling=true").stdout.strip() == "", "the scratch database's volume was left"


def test_the_restore_drill_verifies_over_ssh(host, seeded, first_set):
    base = [sys.executable, str(ROOT / "scripts" / "restore_drill.py"), "--no-pulumi", "--ssh-host", host.address,
            "--ssh-host-key", host.host_key, "--ssh-key-file", str(host.private_key_path)]
    drill = subprocess.run(base, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    newest = sets(host)[-1]
    assert re.match(rf"restore_drill: OK {newest} restores into a scratch database and matches its manifest \(", drill.stdout.splitlines()[-1])
    assert re.search(rf"^issue_events_issueevent\s+{seeded['issue_events_issueevent']}\s+{seeded['issue_events_issueevent']}\s+ok$",
                     drill.stdout, re.M)
    missing = subprocess.run([*base, "--set", "glitchtip-19990101T000000Z"], capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[-1] == f"restore_drill: FAILED ?: no backup set {BACKUPS}/glitchtip-19990101T000000Z (see: restore.sh --list)"
    elsewhere = subprocess.run([*base, "--restore-script", "/nonexistent/restore.sh"], capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL)
    assert elsewhere.returncode == 2 and "is BackupJob installed" in elsewhere.stderr


def test_every_run_is_logged_and_the_log_rotates(host, first_set):
    host.run(f"head -c 1100000 /dev/zero | tr '\\0' x >> {LOG}")
    before = int(host.run(f"stat -c %s {LOG}").stdout)
    result = backup(host)
    assert result.rc == 0, result.stderr
    assert int(host.run(f"stat -c %s {LOG}.1").stdout) == before
    log = host.read_file(LOG).decode()
    assert log.splitlines()[0].startswith("backup.sh: backup started at "), log[:200]
    assert f"backup {result.stdout.strip().rsplit('/', 1)[1]} complete" in log, "a run by hand is missing from the log"
    assert [host.run(f"stat -c %a {p}").stdout.strip() for p in (LOG, f"{LOG}.1")] == ["600", "600"]


def test_verify_of_a_damaged_set_fails(host, first_set):
    copy = "/var/tmp/damaged-backups"
    host.run(f"rm -rf {copy} && mkdir -p {copy} && cp -a {BACKUPS}/{first_set} {copy}/ && "
             f"printf 'X' | dd of={copy}/{first_set}/db.dump bs=1 seek=4096 conv=notrunc 2>/dev/null")
    result = sh(host, f"{RESTORE} --verify {copy}/{first_set}")
    assert result.rc == 1
    assert "checksum mismatch: the set is damaged" in result.stderr
    # a dump that is not one, with checksums to match: the scratch restore fails and is cleaned up all the same
    host.run(f"cd {copy}/{first_set} && head -c 4096 /dev/urandom > db.dump && sha256sum db.dump uploads.tar.gz config.tar manifest.txt > SHA256SUMS")
    broken = sh(host, f"{RESTORE} --verify {copy}/{first_set}")
    assert broken.rc == 1
    assert f"pg_restore of {first_set} into a scratch database failed" in broken.stderr
    assert host.run("docker ps -aq --filter label=glitchtip-migration.role=restore-verify").stdout.strip() == ""
    host.run(f"rm -rf {copy}")


def test_full_restore_brings_deleted_rows_back_and_glitchtip_is_healthy(host, seeded, first_set):
    psql(host, "DELETE FROM issue_events_issueevent WHERE id > 100; DELETE FROM projects_project;")
    host.run("docker run --rm -v glitchtip_uploads:/u busybox:1.36 rm -rf /u/attachments")
    assert app_counts(host)["issue_events_issueevent"] == 100
    refused = sh(host, f"{RESTORE} {first_set}")
    assert refused.rc == 1 and "say what to do" in refused.stderr
    result = sh(host, f"{RESTORE} --confirm {first_set}", timeout=600)
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"restore: OK {first_set} restored into the live stack"
    assert db_counts(host) == seeded
    assert app_counts(host) == seeded, "GlitchTip does not see the restored rows"
    assert host.run("curl -fsS --max-time 10 http://127.0.0.1:8000/_health/").stdout == "ok"
    owner = host.run("docker run --rm -v glitchtip_uploads:/u busybox:1.36 stat -c '%u %s' /u/attachments/a.bin").stdout.split()
    assert owner == ["5000", "65536"], "the upload did not come back with GlitchTip's uid"
    assert all(running_services(host).values()), running_services(host)
    assert "running the migrate step" in result.stderr


# ---------------------------------------------------------------------------- faults


def test_a_concurrent_run_is_refused(host, first_set):
    before = sets(host)
    # -o: only flock itself holds the lock, so killing it (by pid) releases the lock
    holder = host.run(f"flock -o {LOCK} sleep 60 </dev/null >/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        wait_until(lambda: sh(host, f"flock -n {LOCK} true").rc == 1, 10, "the lock held")
        second = backup(host)
        assert second.rc == 1
        assert f"another backup or restore is running (lock {LOCK} is held)" in second.stderr
        assert sets(host) == before
        restore = sh(host, f"{RESTORE} --verify")
        assert restore.rc == 1 and "another backup or restore is running" in restore.stderr
    finally:
        host.ssh(f"pkill -P {holder}; kill {holder}")


def test_a_pg_dump_failure_leaves_nothing_behind(host, first_set):
    """pg_dump cannot lock a table (a session holds it exclusively): it gives up, and so does the run."""
    before = sets(host)
    conf = write_conf(host, "/root/backup-lockwait.conf", LOCK_WAIT_TIMEOUT="2")
    holder = host.run(f"cd {DIR} && docker compose exec -T -e PGAPPNAME=backup-test-lock postgres psql -U glitchtip -d glitchtip -c "
                      "'BEGIN; LOCK TABLE projects_project IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);' </dev/null >/dev/null 2>&1 & echo $!").stdout.strip()
    wait_until(lambda: psql(host, "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'projects_project'::regclass;").strip() == "1",
               30, "the exclusive lock")
    try:
        result = backup(host, "--config", conf)
        assert result.rc == 1
        assert "LOCK TABLE public.projects_project" in result.stderr and "pg_dump failed" in result.stderr, result.stderr
        assert "removed the unfinished set" in result.stderr
        assert sets(host) == before, "a partial set or temporary directory was left"
        assert all(intact(host, name) for name in before)
        assert psql(host, "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction';").strip() == "0", \
            "the snapshot session was left open"
    finally:
        psql(host, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'backup-test-lock';")
        host.ssh(f"kill {holder} 2>/dev/null")


def test_a_full_disk_fails_without_a_partial_set(host, first_set):
    small = "/mnt/small-backups"
    conf = write_conf(host, "/root/backup-small.conf", BACKUP_DIR=small)
    host.run(f"mkdir -p {small} && mount -t tmpfs -o size=4m,mode=0700 tmpfs {small}")
    try:
        fits = backup(host, "--config", conf)
        assert fits.rc == 0, fits.stderr
        older = sets(host, small)
        assert len(older) == 1 and SET_NAME.match(older[0])
        used = host.run(f"df -k --output=used {small} | tail -n 1").stdout.strip()
        # the uploads grow past what the disk can hold: the run dies half-way through writing
        host.run("docker run --rm -v glitchtip_uploads:/u busybox:1.36 sh -c 'head -c 4000000 /dev/urandom > /u/big.bin'")
        full = backup(host, "--config", conf)
        assert full.rc == 1
        assert "No space left on device" in full.stderr and "removed the unfinished set" in full.stderr
        assert sets(host, small) == older
        assert intact(host, older[0], small)
        assert host.run(f"df -k --output=used {small} | tail -n 1").stdout.strip() == used
        # too little room for another set of the last one's size: refused before writing anything
        avail = int(host.run(f"df -k --output=avail {small} | tail -n 1").stdout)
        host.run(f"head -c {(avail - 512) * 1024} /dev/zero > {small}/filler")
        refused = backup(host, "--config", conf)
        assert refused.rc == 1
        assert re.search(r"only \d+ KiB free in /mnt/small-backups, a new set needs about \d+ KiB", refused.stderr), refused.stderr
        assert "pg_dump" not in refused.stderr and sets(host, small) == sorted([*older, "filler"])
    finally:
        host.ssh(f"umount {small}; rmdir {small}; docker run --rm -v glitchtip_uploads:/u busybox:1.36 rm -f /u/big.bin")


def test_retention_removes_only_its_own_sets_older_than_the_limit(host, first_set):
    old_regular, young_regular, old_final = ("glitchtip-20250101T020000Z", "glitchtip-20250102T020000Z",
                                              "glitchtip-20240101T020000Z-final")
    foreign = ("glitchtip-manual-copy", "notes", "glitchtip-20250103T020000Z.tar")
    for name in (old_regular, young_regular, old_final, *foreign[:2]):
        host.run(f"mkdir -p {BACKUPS}/{name} && touch {BACKUPS}/{name}/SHA256SUMS")
    host.run(f"touch {BACKUPS}/{foreign[2]}")
    host.run(f"touch -d '31 days ago' {BACKUPS}/{old_regular} {BACKUPS}/{foreign[0]} {BACKUPS}/{foreign[1]} {BACKUPS}/{foreign[2]}"
             f" && touch -d '29 days ago' {BACKUPS}/{young_regular} && touch -d '400 days ago' {BACKUPS}/{old_final}")
    before = sets(host)
    result = backup(host)
    assert result.rc == 0, result.stderr
    new = result.stdout.strip().rsplit("/", 1)[1]
    assert sets(host) == sorted({*before, new} - {old_regular})
    assert f"retention: removed {old_regular} (older than 30 days)" in result.stderr
    host.run(f"rm -rf {BACKUPS}/{young_regular} {BACKUPS}/{old_final} " + " ".join(f"{BACKUPS}/{f}" for f in foreign))


def test_offsite_copy_and_heartbeat_follow_success_only(host, first_set):
    """The off-site command gets the set's path; the heartbeat is POSTed only when all succeeded."""
    listener = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_POST(self):\n"
        "        open('/var/tmp/heartbeats', 'a').write(self.path + '\\n')\n"
        "        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        "http.server.HTTPServer(('127.0.0.1', 18765), H).serve_forever()\n"
    )
    host.put_file("/var/tmp/heartbeat.py", listener)
    listener_pid = host.run("rm -f /var/tmp/heartbeats; rm -rf /var/tmp/offsite; mkdir -p /var/tmp/offsite;"
                            " timeout 120 python3 /var/tmp/heartbeat.py </dev/null >/dev/null 2>&1 & echo $!").stdout.strip()
    secret_path = "/api/0/organizations/acme/heartbeat_check/Hb5ecretEndp0int/"
    try:
        wait_until(lambda: sh(host, "curl -s -o /dev/null -X POST http://127.0.0.1:18765/probe").rc == 0, 20, "the listener")
        host.run("rm -f /var/tmp/heartbeats")
        good = write_conf(host, "/root/backup-offsite.conf", HEARTBEAT_URL=f"http://127.0.0.1:18765{secret_path}",
                          OFFSITE_COMMAND='cp -a "$1" /var/tmp/offsite/')
        ok = backup(host, "--config", good)
        assert ok.rc == 0, ok.stderr
        name = ok.stdout.strip().rsplit("/", 1)[1]
        assert intact(host, name, "/var/tmp/offsite"), "the off-site copy is not the set"
        assert host.read_file("/var/tmp/heartbeats").decode() == secret_path + "\n"
        assert "Hb5ecretEndp0int" not in ok.stderr + ok.stdout
        bad = write_conf(host, "/root/backup-offsite.conf", HEARTBEAT_URL=f"http://127.0.0.1:18765{secret_path}",
                         OFFSITE_COMMAND="echo offsite unreachable >&2; exit 3")
        failed = backup(host, "--config", bad)
        assert failed.rc == 1
        assert "the offsite copy of" in failed.stderr and "the local set is complete and kept" in failed.stderr
        assert intact(host, failed.stdout.strip().rsplit("/", 1)[1])
        assert host.read_file("/var/tmp/heartbeats").decode() == secret_path + "\n", "a heartbeat was sent for a failed run"
    finally:
        host.ssh(f"kill {listener_pid}; rm -rf /var/tmp/offsite /var/tmp/heartbeats /root/backup-offsite.conf")


# ---------------------------------------------------------------------------- cron, destroy


def test_cron_runs_the_job_at_the_scheduled_minute(host, engine, first_set):
    """A schedule for the next minute, installed the way `pulumi up` does; cron must run it."""
    hour, minute, second = (int(x) for x in host.run("date +'%H %M %S'").stdout.split())
    ahead = 1 if second < 45 else 2  # leave cron time to see the new file before the boundary
    total = hour * 60 + minute + ahead
    schedule = f"{total % 60} {(total // 60) % 24} * * *"
    scheduled = program_for(host, backupSchedule=schedule)
    ran = engine.up(scheduled)  # `pulumi up` after `pulumi config set backupSchedule ...`
    assert [(step.urn.rsplit("::", 1)[1], step.operation) for step in ran] == [("glitchtip-backup-install", "update")]
    cron = host.read_file(CRON_FILE).decode()
    assert cron == sent_cron(scheduled)
    assert cron.splitlines()[-1] == f"{schedule} root {BACKUP} --config {DIR}/backup.conf >>{LOG} 2>&1"
    before = set(sets(host))
    log_before = int(host.run(f"stat -c %s {LOG}").stdout)
    wait = (60 - second) + 60 * (ahead - 1) + 60
    new = wait_until(lambda: [s for s in set(sets(host)) - before if SET_NAME.match(s)], wait, "a set made by cron")
    assert len(new) == 1
    wait_until(lambda: "backup glitchtip-" in host.read_file(LOG).decode()[log_before:], 60, "the run's log lines")
    assert intact(host, new[0])
    assert manifest(host, new[0])["label"] == "scheduled"
    engine.up(program_for(host))
    assert host.read_file(CRON_FILE).decode().splitlines()[-1].startswith("0 2 * * * root ")


def sent_cron(program: Program) -> str:
    """The cron text the program sent: install-backup.sh's 6th argument (CONF, CRON, BACKUP_SH, RESTORE_SH follow the 4 paths)."""
    script, args = parse_command(program.named("glitchtip-backup-install").inputs["create"])
    assert script == "install-backup.sh"
    return args[5]


def test_destroy_takes_a_final_set_before_the_stack_goes(host, engine, seeded, first_set):
    """`pulumi destroy`: BackupJob's delete first (a final set while GlitchTip runs), then the stack's."""
    psql(host, "INSERT INTO projects_project(data) VALUES ('{\"name\": \"made-after-the-last-backup\"}');")
    before = set(sets(host))
    ran = engine.destroy()
    assert [(step.urn.rsplit("::", 1)[1], step.operation) for step in ran] == [
        ("glitchtip-backup-install", "delete"), ("glitchtip-deploy", "delete")]
    assert "final backup taken" in ran[0].stderr
    final = sorted(set(sets(host)) - before)
    assert len(final) == 1 and final[0].endswith("-final"), final
    assert before <= set(sets(host)), "a backup set was removed"
    assert intact(host, final[0])
    found = manifest(host, final[0])
    assert found["label"] == "final"
    assert int(found["rows.projects_project"]) == seeded["projects_project"] + 1, "the final set misses the newest row"
    for path in (CRON_FILE, BACKUP, RESTORE, f"{DIR}/backup.conf"):
        assert host.ssh(f"test -e {path}").rc == 1, f"{path} was left"
    assert host.ssh(f"test -f {LOG}").rc == 0
    assert running_services(host) == {}, "the stack's teardown did not run after the final backup"
