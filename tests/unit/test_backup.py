"""BackupJob under mocks, and its install/uninstall scripts run for real with bash on this machine.

The backup and restore themselves run on the throwaway server (tests/integration/test_backup.py).
"""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from components.backup import BackupJobArgs, install_step, installed_files, installed_script, render_cron, render_stdin
from components.remote import bundle, parse_command
from components.settings import ConfigError
from tests import harness
from scripts import restore_drill
from tests.harness import SECRET_KEYS, prod_config, run_program

OFFSITE = 'rclone copy "$1" offsite:glitchtip --s3-secret-access-key=Offs1teS3cretKey'
HEARTBEAT = "https://glitchtip.example.com/api/0/organizations/acme/heartbeat_check/Hb5ecretEndp0int/"
EXPECTED_CRON = (
    "# /etc/cron.d/glitchtip-backup: GlitchTip's scheduled backup, installed by glitchtip-migration (pulumi).\n"
    "# Edit backupSchedule and run `pulumi up` instead of this file.\n"
    "SHELL=/bin/bash\n"
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    'MAILTO=""\n'
    "0 2 * * * root /opt/glitchtip/bin/backup.sh --config /opt/glitchtip/backup.conf >>/var/log/glitchtip-backup.log 2>&1\n"
)


def payload(stdin: str) -> dict[str, str]:
    """install-backup.sh's stdin as {KEY: value}."""
    return dict(line.split("=", 1) for line in stdin.splitlines())


def install_args(reg: harness.Registration) -> list[str]:
    """The arguments the install step passes to install-backup.sh."""
    script, args = parse_command(reg.inputs["create"])
    assert script == "install-backup.sh"
    return args


def sent_files(reg: harness.Registration) -> dict[str, str]:
    """The file texts install-backup.sh receives as its 5th to 8th arguments."""
    return dict(zip(("CONF", "CRON", "BACKUP_SH", "RESTORE_SH"), install_args(reg)[4:], strict=True))


# ---------------------------------------------------------------------------- config, under mocks


@pytest.mark.parametrize(
    "schedule,fix",
    [
        ("0 25 * * *", "'25' is out of range 0-23"),
        ("0 2 * *", "five-field cron schedule such as '0 2 * * *'"),
        ("0 2 * * * root", "five-field cron schedule such as '0 2 * * *'"),
        ("0 2 % * *", "without '%', which cron treats as a newline"),
        ("*/0 2 * * *", "'*/0' has a bad step"),
        ("0 6-3 * * *", "'6-3' is a reversed range"),
        ("0 2 * * funday", "'funday' is out of range 0-7"),
    ],
)
def test_a_bad_schedule_fails_preview_with_one_sentence_naming_the_key(schedule, fix):
    program = run_program(prod_config(backupSchedule=schedule), preview=True)
    assert isinstance(program.error, ConfigError), program.error
    message = str(program.error)
    assert message.startswith("Config key 'backupSchedule' must be a five-field cron schedule"), message
    assert fix in message
    assert program.registrations == [], "resources were registered before the schedule was checked"


@pytest.mark.parametrize(
    "overrides,fix",
    [
        (dict(backupOffsiteCommand="rclone copy\nrm -rf /"), "single line"),
        (dict(backupDir="/"), "directory of its own"),
        (dict(backupDir="/opt/glitchtip"), "not / and not installDir"),
        (dict(backupDir="/var/backups/glitch tip"), "absolute path"),
    ],
)
def test_bad_backup_settings_fail_with_the_key_named(overrides, fix):
    program = run_program(prod_config(**overrides), preview=True)
    assert isinstance(program.error, ConfigError), program.error
    assert str(program.error).startswith(f"Config key '{next(iter(overrides))}' ")
    assert fix in str(program.error)


def test_args_refuse_what_cron_would_misread():
    good = dict(connection={}, install_dir="/opt/glitchtip", backup_dir="/var/backups/glitchtip", schedule="0 2 * * *",
                retention_days=30, glitchtip_version="6.2.6", glitchtip_port=8000)
    BackupJobArgs(**good)
    with pytest.raises(ValueError, match="contain a dot"):
        BackupJobArgs(**good, cron_file="/etc/cron.d/glitchtip.backup")
    with pytest.raises(ValueError, match="'%'"):
        BackupJobArgs(**{**good, "backup_dir": "/var/backups/%d"})
    with pytest.raises(ConfigError, match="backupSchedule"):
        BackupJobArgs(**{**good, "schedule": "0 2 * * * *"})


# ---------------------------------------------------------------------------- the graph, under mocks


@pytest.fixture(scope="module")
def program() -> harness.Program:
    result = run_program(prod_config(backupOffsiteCommand=OFFSITE), secret_keys=(*SECRET_KEYS, "backupOffsiteCommand"))
    assert result.error is None, result.error
    return result


def test_cron_file_content_is_exact(program):
    reg = program.named("glitchtip-backup-install")
    assert sent_files(reg)["CRON"] == EXPECTED_CRON  # in the command: a schedule change is an update, shown in preview
    assert install_args(reg)[2] == "/etc/cron.d/glitchtip-backup"


def test_cron_file_follows_the_schedule_and_paths():
    args = BackupJobArgs(connection={}, install_dir="/srv/gt", backup_dir="/mnt/backups", schedule="30 3 * * 1-5",
                         retention_days=7, glitchtip_version="6.2.6", glitchtip_port=8000, log_file="/var/log/gt-backup.log")
    line = render_cron(args).splitlines()[-1]
    assert line == "30 3 * * 1-5 root /srv/gt/bin/backup.sh --config /srv/gt/backup.conf >>/var/log/gt-backup.log 2>&1"
    assert "%" not in render_cron(args)
    assert render_cron(args).endswith("\n"), "cron ignores a last line without a newline"


def test_backup_conf_holds_paths_and_policy(program):
    conf = sent_files(program.named("glitchtip-backup-install"))["CONF"]
    lines = [line for line in conf.splitlines() if not line.startswith("#")]
    assert lines == [
        "INSTALL_DIR=/opt/glitchtip",
        "BACKUP_DIR=/var/backups/glitchtip",
        "RETENTION_DAYS=30",
        "GLITCHTIP_VERSION=6.2.6",
        "GLITCHTIP_PORT=8000",
        "LOG_FILE=/var/log/glitchtip-backup.log",
    ]


def test_installed_files_are_arguments_and_only_the_secret_lines_travel_on_stdin(program):
    reg = program.named("glitchtip-backup-install")
    files = sent_files(reg)
    assert files["BACKUP_SH"] == installed_script("backup.sh")
    assert files["RESTORE_SH"] == installed_script("restore.sh")
    assert list(payload(reg.inputs["stdin"])) == ["HEARTBEAT_URL", "OFFSITE_COMMAND"]
    assert reg.inputs["create"].splitlines()[0] == (
        "# glitchtip-migration: install-backup.sh /opt/glitchtip /var/backups/glitchtip /etc/cron.d/glitchtip-backup"
        " /var/log/glitchtip-backup.log " + " ".join(f"<{len(text)} bytes>" for text in files.values())
    )
    # sshd hands the whole command to the login shell as one argv string: at most 128 KiB on Linux
    assert len(reg.inputs["create"].encode()) < 64_000


def test_the_command_is_known_when_the_secret_stdin_is_not(monkeypatch, tmp_path):
    """A heartbeat URL made by another resource (unknown at a first preview) leaves the command known."""
    main = tmp_path / "__main__.py"
    main.write_text(textwrap.dedent("""
        import pulumi
        from components.backup import BackupJob, BackupJobArgs
        from components.settings import Settings
        settings = Settings.load()
        unknown = pulumi.Output(set(), pulumi.Output.from_input("x").future(), pulumi.Output.from_input(False).future())
        BackupJob("glitchtip-backup", BackupJobArgs.from_settings(settings, {"host": "203.0.113.10"}, heartbeat_url=unknown))
    """))
    monkeypatch.setattr(harness, "MAIN", main)
    result = run_program(prod_config(), preview=True)
    assert result.error is None, result.error
    reg = result.named("glitchtip-backup-install")
    assert "stdin" in reg.unknown_inputs and "create" not in reg.unknown_inputs
    assert sent_files(reg)["CRON"] == EXPECTED_CRON
    assert "RETENTION_DAYS=30\n" in sent_files(reg)["CONF"]


def test_no_secret_in_any_command_string(program):
    reg = program.named("glitchtip-backup-install")
    assert payload(reg.inputs["stdin"])["OFFSITE_COMMAND"] == OFFSITE
    assert "stdin" in reg.secret_inputs
    for cmd in program.commands:
        for field in ("create", "update", "delete"):
            text = cmd.inputs.get(field) or ""
            assert "Offs1teS3cretKey" not in text, f"{cmd.urn} puts the off-site command on the command line ({field})"


def test_heartbeat_url_only_on_stdin(monkeypatch, tmp_path):
    """BackupJob with a (secret) heartbeat URL, as the provisioning will wire it."""
    main = tmp_path / "__main__.py"
    main.write_text(textwrap.dedent(f"""
        import pulumi
        from components.backup import BackupJob, BackupJobArgs
        from components.settings import Settings
        settings = Settings.load()
        BackupJob("glitchtip-backup", BackupJobArgs.from_settings(settings, {{"host": "203.0.113.10"}},
                  heartbeat_url=pulumi.Output.secret({HEARTBEAT!r})))
    """))
    monkeypatch.setattr(harness, "MAIN", main)
    result = run_program(prod_config())
    assert result.error is None, result.error
    reg = result.named("glitchtip-backup-install")
    assert payload(reg.inputs["stdin"])["HEARTBEAT_URL"] == HEARTBEAT
    assert "stdin" in reg.secret_inputs
    assert {"stdout", "stderr"} <= set(reg.additional_secret_outputs)
    assert reg.inputs["logging"] == "none"
    for field in ("create", "update", "delete"):
        assert "Hb5ecretEndp0int" not in (reg.inputs.get(field) or ""), field


def test_the_install_step_follows_the_stack_and_is_never_replaced(program):
    reg = program.named("glitchtip-backup-install")
    job = program.named("glitchtip-backup")
    assert job.type == "glitchtip:index:BackupJob"
    assert reg.parent == job.urn
    assert program.named("glitchtip-deploy").urn in reg.dependencies, "backups installed before the stack exists"
    assert not reg.inputs.get("triggers")
    assert reg.inputs["update"] == reg.inputs["create"]
    assert reg.inputs["delete"].startswith("# glitchtip-migration: uninstall-backup.sh /opt/glitchtip /etc/cron.d/glitchtip-backup keep\n")


def test_destroy_with_data_deletion_insists_on_the_final_backup():
    result = run_program(prod_config(deleteDataOnDestroy=True))
    assert result.error is None, result.error
    delete = result.named("glitchtip-backup-install").inputs["delete"]
    assert delete.splitlines()[0].endswith("uninstall-backup.sh /opt/glitchtip /etc/cron.d/glitchtip-backup delete")


def test_the_operator_finds_the_restore_script(program):
    assert program.outputs["restoreScript"] == "/opt/glitchtip/bin/restore.sh"
    assert program.outputs["backupDir"] == "/var/backups/glitchtip"


# ---------------------------------------------------------------------------- the scripts, for real


def _bash(script: str, *args: str, stdin: str = "", path: str | None = None) -> subprocess.CompletedProcess:
    """Run the bundled script as the server receives it (bash -c BUNDLE NAME ARGS)."""
    env = {"PATH": path or os.environ["PATH"], "HOME": "/tmp", "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "-c", bundle(script), script, *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def layout(tmp_path: Path) -> dict:
    (tmp_path / "opt").mkdir()
    (tmp_path / "cron.d").mkdir()
    args = BackupJobArgs(connection={}, install_dir=str(tmp_path / "opt"), backup_dir=str(tmp_path / "backups"),
                         schedule="15 1 * * *", retention_days=14, glitchtip_version="6.2.6", glitchtip_port=8000,
                         cron_file=str(tmp_path / "cron.d" / "glitchtip-backup"), log_file=str(tmp_path / "backup.log"))
    return {"root": tmp_path, "args": args, "files": installed_files(args), "step_args": list(install_step(args).args),
            "stdin": render_stdin(HEARTBEAT, OFFSITE)}


def _facts(path: Path) -> tuple[bytes, int, int]:
    st = path.stat()
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns


@pytest.mark.skipif(os.geteuid() != 0, reason="install-backup.sh chowns to root")
def test_install_writes_every_file_with_its_mode_and_is_idempotent(layout):
    args = layout["args"]
    first = _bash("install-backup.sh", *layout["step_args"], stdin=layout["stdin"])
    assert first.returncode == 0, first.stderr
    root = layout["root"]
    backup_sh, restore_sh = root / "opt/bin/backup.sh", root / "opt/bin/restore.sh"
    conf, cron = root / "opt/backup.conf", Path(args.cron_file)
    assert backup_sh.read_text() == installed_script("backup.sh")
    assert restore_sh.read_text() == installed_script("restore.sh")
    assert cron.read_text() == render_cron(args)
    assert conf.read_text() == layout["files"]["CONF"] + f"HEARTBEAT_URL={HEARTBEAT}\nOFFSITE_COMMAND={OFFSITE}\n"
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (backup_sh, restore_sh, conf, cron, root / "opt/bin", root / "backups", Path(args.log_file))}
    assert modes == {backup_sh: 0o700, restore_sh: 0o700, conf: 0o600, cron: 0o644, root / "opt/bin": 0o700,
                     root / "backups": 0o700, Path(args.log_file): 0o600}
    for secret in ("Hb5ecretEndp0int", "Offs1teS3cretKey"):
        assert secret not in first.stdout + first.stderr
    assert not list(root.glob("cron.d/.*")), "a temp file was left in cron.d"

    before = {p: _facts(p) for p in (backup_sh, restore_sh, conf, cron)}
    second = _bash("install-backup.sh", *layout["step_args"], stdin=layout["stdin"])
    assert second.returncode == 0, second.stderr
    assert {p: _facts(p) for p in before} == before, "a second run changed a file"
    assert second.stderr.count(" unchanged") == 4


@pytest.mark.skipif(os.geteuid() != 0, reason="install-backup.sh chowns to root")
def test_a_new_secret_rewrites_only_backup_conf(layout):
    assert _bash("install-backup.sh", *layout["step_args"], stdin=layout["stdin"]).returncode == 0
    result = _bash("install-backup.sh", *layout["step_args"], stdin=render_stdin(HEARTBEAT + "v2/", None))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" unchanged") == 3 and f"{layout['root']}/opt/backup.conf written" in result.stderr
    assert (layout["root"] / "opt/backup.conf").read_text() == layout["files"]["CONF"] + f"HEARTBEAT_URL={HEARTBEAT}v2/\nOFFSITE_COMMAND=\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="install-backup.sh chowns to root")
@pytest.mark.parametrize(
    "change,error",
    [
        (lambda a, s: (a, "CONF_B64=Iwo=\n" + s), "stdin: unexpected line 'CONF_B64=...'"),
        (lambda a, s: ([*a[:4], a[5], a[4], *a[6:]], s), "the CONF_TEXT argument is not backup.conf"),
        (lambda a, s: ([*a[:5], a[5].replace("/bin/backup.sh", "/bin/other.sh"), *a[6:]], s), "the CRON_TEXT argument is not the cron.d entry"),
        (lambda a, s: ([*a[:6], "rm -rf /", *a[7:]], s), "are not scripts"),
        (lambda a, s: (a[:7], s), "usage: install-backup.sh"),
    ],
    ids=["old-stdin-shape", "swapped-files", "cron-for-another-dir", "not-a-script", "missing-argument"],
)
def test_install_refuses_what_components_backup_py_would_not_send(layout, change, error):
    step_args, stdin = change(layout["step_args"], layout["stdin"])
    result = _bash("install-backup.sh", *step_args, stdin=stdin)
    assert result.returncode != 0
    assert error in result.stderr
    assert "Hb5ecretEndp0int" not in result.stdout + result.stderr
    assert not (layout["root"] / "opt/bin/backup.sh").exists()
    assert not (layout["root"] / "opt/backup.conf").exists()
    assert not Path(layout["args"].cron_file).exists()


@pytest.fixture
def installed(layout) -> dict:
    if os.geteuid() != 0:
        pytest.skip("install-backup.sh chowns to root")
    result = _bash("install-backup.sh", *layout["step_args"], stdin=layout["stdin"])
    assert result.returncode == 0, result.stderr
    root = layout["root"]
    (root / "backups/glitchtip-20260101T020000Z").mkdir()
    (root / "backups/glitchtip-20260101T020000Z/db.dump").write_text("kept")
    bin_dir = root / "fakebin"
    bin_dir.mkdir()
    # the installed backup.sh replaced by one that records how it was called and exits with final-rc
    (root / "opt/bin/backup.sh").write_text(f'#!/bin/sh\necho "$@" >> {root}/final-calls\nexit "$(cat {root}/final-rc)"\n')
    return {**layout, "bin": bin_dir}


def _fake(bin_dir: Path, name: str, body: str) -> None:
    (bin_dir / name).write_text("#!/bin/sh\n" + body)
    (bin_dir / name).chmod(0o755)


def _uninstall(installed: dict, data: str, docker_running: bool, backup_rc: int) -> subprocess.CompletedProcess:
    root, bin_dir = installed["root"], installed["bin"]
    _fake(bin_dir, "docker", "echo 0123456789ab\n" if docker_running else "exit 0\n")
    (root / "final-rc").write_text(str(backup_rc))
    args = installed["args"]
    return _bash("uninstall-backup.sh", args.install_dir, args.cron_file, data, path=f"{bin_dir}:/usr/bin:/bin")


def _installed_files(installed: dict) -> list[Path]:
    root = installed["root"]
    return [root / "opt/bin/backup.sh", root / "opt/bin/restore.sh", root / "opt/backup.conf", Path(installed["args"].cron_file)]


def test_uninstall_takes_a_final_backup_then_removes_only_its_files(installed):
    result = _uninstall(installed, "keep", docker_running=True, backup_rc=0)
    assert result.returncode == 0, result.stderr
    root = installed["root"]
    assert (root / "final-calls").read_text() == f"--final --config {root}/opt/backup.conf\n"
    assert [p for p in _installed_files(installed) if p.exists()] == []
    assert not (root / "opt/bin").exists()
    assert (root / "backups/glitchtip-20260101T020000Z/db.dump").read_text() == "kept"
    assert Path(installed["args"].log_file).exists()
    again = _uninstall(installed, "keep", docker_running=True, backup_rc=0)
    assert again.returncode == 0 and "no final backup taken" in again.stderr


def test_a_failed_final_backup_stops_a_destroy_that_deletes_data(installed):
    result = _uninstall(installed, "delete", docker_running=True, backup_rc=1)
    assert result.returncode == 1
    assert "the final backup failed and deleteDataOnDestroy is on, so nothing was removed" in result.stderr
    assert all(p.exists() for p in _installed_files(installed))


def test_a_failed_final_backup_only_warns_when_the_volumes_stay(installed):
    result = _uninstall(installed, "keep", docker_running=True, backup_rc=1)
    assert result.returncode == 0, result.stderr
    assert "warning: the final backup failed" in result.stderr
    assert [p for p in _installed_files(installed) if p.exists()] == []


def test_no_final_backup_when_glitchtip_is_not_running(installed):
    result = _uninstall(installed, "delete", docker_running=False, backup_rc=1)
    assert result.returncode == 0, result.stderr
    assert "postgres is not running: no final backup taken" in result.stderr
    assert not (installed["root"] / "final-calls").exists()


@pytest.mark.parametrize("script", ["backup.sh", "restore.sh"])
def test_installed_scripts_are_self_contained(tmp_path, script):
    """Copied alone (no lib.sh beside it), the installed file still runs: it carries its helpers."""
    path = tmp_path / script
    path.write_text(installed_script(script))
    result = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script}")
    action = [] if script == "backup.sh" else ["--list"]
    missing = subprocess.run(["bash", str(path), "--config", str(tmp_path / "none.conf"), *action],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1
    assert f"cannot read the backup config {tmp_path}/none.conf" in missing.stderr


# ---------------------------------------------------------------------------- the restore drill's verdict

VERIFY_OK = """set: glitchtip-20261204T020000Z (scheduled, created 2026-12-04T02:00:04Z, GlitchTip 6.2.6)
checksums: ok (4 files)
table                                    backup     restored
users_user                                    1            1  ok
verify: OK glitchtip-20261204T020000Z restores and matches its manifest
"""


def test_drill_reads_a_verify_that_passed():
    drill = restore_drill.interpret(0, VERIFY_OK, "restore.sh: restoring into the scratch container x\n", 12.0)
    assert drill.ok and drill.set_name == "glitchtip-20261204T020000Z"
    assert drill.summary() == "restore_drill: OK glitchtip-20261204T020000Z restores into a scratch database and matches its manifest (12 s)"


def test_drill_reads_a_mismatch_and_an_error():
    mismatch = VERIFY_OK.replace("1            1  ok", "1            0  MISMATCH").replace(
        "verify: OK glitchtip-20261204T020000Z restores and matches its manifest",
        "verify: FAILED glitchtip-20261204T020000Z: restored row counts differ from the manifest")
    drill = restore_drill.interpret(1, mismatch, "", 3.0)
    assert not drill.ok
    assert drill.summary() == "restore_drill: FAILED glitchtip-20261204T020000Z: restored row counts differ from the manifest"
    error = restore_drill.interpret(1, "", "restore.sh: error: another backup or restore is running (lock x is held)\n", 0.1)
    assert error.summary() == "restore_drill: FAILED ?: another backup or restore is running (lock x is held)"
    # exit 0 without the OK line is not a pass
    assert not restore_drill.interpret(0, "set: glitchtip-20261204T020000Z (...)\n", "", 1.0).ok


def test_drill_refuses_a_set_name_that_is_not_one():
    with pytest.raises(SystemExit):
        restore_drill.parse_args(["--set", "../../etc"])
