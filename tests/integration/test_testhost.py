"""The throwaway server is what the other integration tests believe it is.

Observable facts only: a key that is rejected, a container that ran, a row that came
back, an envelope that arrived, a file that cron wrote, namespaces that are gone.
"""
from __future__ import annotations

import base64
import json
import shlex
import subprocess
import time
import uuid

import paramiko
import pytest

from tests.integration import testhost as th

pytestmark = pytest.mark.integration

CRON_PROBE = "/run/testhost-cron-probe"


@pytest.fixture(scope="module")
def cron_probe(testhost):
    """An /etc/cron.d entry installed early, so the cron test waits less than a minute."""
    testhost.put_file("/etc/cron.d/testhost-probe",
                      f"* * * * * root date +\\%s >> {CRON_PROBE}\n", mode=0o644)
    return time.time()


def _wait(predicate, seconds: float, what: str):
    return th.wait_until(predicate, seconds, interval=0.25) or pytest.fail(f"{what}: not seen within {seconds} s")


# ------------------------------------------------------------------------------ sshd

def test_sshd_answers_with_the_pinned_host_key(testhost, cron_probe):
    assert testhost.run("cat /etc/os-release").stdout.count('VERSION_CODENAME=bookworm') == 1
    served = testhost._client.get_transport().get_remote_server_key()
    assert f"{served.get_name()} {served.get_base64()}" == testhost.host_key
    assert testhost.host_key.startswith("ssh-ed25519 AAAA")


def test_sshd_with_a_wrong_pinned_key_is_rejected(testhost):
    client = paramiko.SSHClient()
    wrong_b64 = _fresh_ed25519_pub(testhost)
    client.get_host_keys().add(testhost.address, "ssh-ed25519",
                               paramiko.Ed25519Key(data=base64.b64decode(wrong_b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(testhost.address, username="root", key_filename=str(testhost.private_key_path),
                       allow_agent=False, look_for_keys=False, timeout=10)
    client.close()


def _fresh_ed25519_pub(testhost) -> str:
    path = testhost.dir / "wrong_host_key"
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().split()[1]


def test_openssh_client_checks_the_pin_too(testhost, tmp_path):
    base = ["ssh", "-i", str(testhost.private_key_path), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"]
    good = subprocess.run([*base, "-o", f"UserKnownHostsFile={testhost.known_hosts_path}",
                           f"root@{testhost.address}", "echo pinned-ok"], capture_output=True, text=True)
    assert good.stdout.strip() == "pinned-ok", good.stderr
    bad_known = tmp_path / "known_hosts"
    bad_known.write_text(f"{testhost.address} ssh-ed25519 {_fresh_ed25519_pub(testhost)}\n")
    bad = subprocess.run([*base, "-o", f"UserKnownHostsFile={bad_known}",
                          f"root@{testhost.address}", "echo should-not-run"], capture_output=True, text=True)
    assert bad.returncode == 255 and "should-not-run" not in bad.stdout
    assert "HOST IDENTIFICATION HAS CHANGED" in bad.stderr


def test_sshd_is_configured_like_a_real_server(testhost):
    cfg = testhost.run("sshd -T").stdout.lower().splitlines()
    assert "passwordauthentication no" in cfg
    assert "permitrootlogin without-password" in cfg
    assert sorted(ln for ln in cfg if ln.startswith("acceptenv")) == ["acceptenv lang", "acceptenv lc_*"]
    r = testhost.ssh("printenv SENTRY_DSN")
    assert r.rc == 1 and r.stdout == ""


def test_ssh_helpers_round_trip_bytes_and_modes(testhost):
    payload = bytes(range(256)) * 64
    testhost.put_file("/root/testhost-blob", payload, mode=0o600)
    assert testhost.read_file("/root/testhost-blob") == payload
    st = testhost.stat("/root/testhost-blob")
    assert (st.st_mode & 0o777, st.st_uid, st.st_size) == (0o600, 0, len(payload))
    assert testhost.ssh("cat > /root/from-stdin && sha256sum /root/from-stdin", stdin=payload).rc == 0
    with pytest.raises(FileNotFoundError):
        testhost.stat("/root/does-not-exist")


# ---------------------------------------------------------------------------- docker

def test_dockerd_runs_a_container_from_a_digest_pinned_image(testhost):
    ref = testhost.images["busybox"]
    repo, digest = ref.split(":", 1)[0], ref.split("@", 1)[1]
    assert digest.startswith("sha256:") and len(digest) == 71
    testhost.run(f"docker pull -q {shlex.quote(ref)}", timeout=120)
    out = testhost.run(f"docker run --rm {shlex.quote(ref)} sh -c 'echo ran-$((6*7))'").stdout
    assert out.strip() == "ran-42"
    digests = json.loads(testhost.run(f"docker image inspect --format '{{{{json .RepoDigests}}}}' "
                                      f"{shlex.quote(ref)}").stdout)
    assert f"{repo}@{digest}" in digests


def test_every_stand_in_image_is_served_by_digest_through_the_mirror(testhost):
    for name, ref in testhost.images.items():
        testhost.run(f"docker pull -q {shlex.quote(ref)}", timeout=180)
    # There is no route out of the server's namespace: the mirror is the only source.
    assert testhost.ssh("ip route show default").stdout.strip() == ""
    assert testhost.images["glitchtip"].startswith("glitchtip/glitchtip:6.2.6@sha256:")
    assert testhost.images["postgres"].startswith(f"{th.POSTGRES_IMAGE[0]}:{th.POSTGRES_IMAGE[1]}@sha256:")


def test_glitchtip_stand_in_image_runs_as_uid_5000_on_port_8000(testhost):
    ref = shlex.quote(testhost.images["glitchtip"])
    cfg = json.loads(testhost.run(f"docker pull -q {ref} >/dev/null && docker image inspect {ref}").stdout)[0]
    assert cfg["Config"]["User"] == "5000"
    assert cfg["Config"]["WorkingDir"] == "/code"
    assert cfg["Config"]["Cmd"] == ["./bin/start.sh"]
    out = testhost.run(f"docker run --rm --entrypoint sh {ref} -c "
                       "'id -u; test -x bin/run-migrate.sh && test -x manage.py && echo entry-points-ok'").stdout
    assert out.split() == ["5000", "entry-points-ok"]
    testhost.ssh("docker rm -f testhost-gt >/dev/null 2>&1")
    testhost.run(f"docker run -d --name testhost-gt -p 127.0.0.1:18000:8000 {ref}")
    try:
        r = testhost.ssh(th._poll("curl -fsS http://127.0.0.1:18000/_health/ >/dev/null", 20, "stand-in")
                         + "; curl -fsS http://127.0.0.1:18000/_health/", timeout=30)
        assert (r.rc, r.stdout.strip()) == (0, "ok"), testhost.ssh("docker logs testhost-gt").stderr
    finally:
        testhost.ssh("docker rm -f testhost-gt >/dev/null")


# -------------------------------------------------------------------------- postgres

def test_postgres_stand_in_takes_the_right_password_and_rejects_a_wrong_one(testhost):
    ref = shlex.quote(testhost.images["postgres"])
    name = "testhost-pg"
    testhost.ssh(f"docker rm -f {name} >/dev/null 2>&1")
    testhost.run(f"docker run -d --name {name} -e POSTGRES_USER=gt -e POSTGRES_PASSWORD=right-pw "
                 f"-e POSTGRES_DB=gtdb -e PGDATA=/var/lib/postgresql/data/pgdata "
                 f"-v testhost-pg:/var/lib/postgresql -p 127.0.0.1:15432:5432 {ref}", timeout=120)
    try:
        testhost.run(th._poll(f"docker exec {name} pg_isready -h 127.0.0.1 -U gt -d gtdb >/dev/null", 30,
                              "postgres stand-in"), timeout=40)
        ok = testhost.ssh("PGPASSWORD=right-pw psql -h 127.0.0.1 -p 15432 -U gt -d gtdb -Atc "
                          "'select current_user, current_database()'")
        assert (ok.rc, ok.stdout.strip()) == (0, "gt|gtdb"), ok.stderr
        bad = testhost.ssh("PGPASSWORD=wrong-pw psql -h 127.0.0.1 -p 15432 -U gt -d gtdb -Atc 'select 1'")
        assert bad.rc != 0 and "password authentication failed" in bad.stderr
        hba = testhost.run(f"docker exec {name} sh -c 'grep -v ^# \"$PGDATA/pg_hba.conf\"'").stdout
        host_lines = [ln.split() for ln in hba.splitlines() if ln.startswith("host")]
        assert host_lines and all(ln[-1] == "scram-sha-256" for ln in host_lines), hba
        tools = testhost.run(f"docker exec {name} sh -c 'for t in pg_dump pg_restore psql pg_isready; "
                               "do command -v $t; done'")
        assert len(tools.stdout.split()) == 4
        assert testhost.run(f"docker exec {name} stat -c %U /var/lib/postgresql/data/pgdata").stdout.strip() \
            == "postgres"
    finally:
        testhost.ssh(f"docker rm -f {name} >/dev/null; docker volume rm testhost-pg >/dev/null")


# --------------------------------------------------------------------------- compose

COMPOSE = """\
name: shimcheck
services:
  db:
    image: {postgres}
    environment: {{POSTGRES_PASSWORD: pw}}
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 1s
      retries: 30
      start_interval: 1s
  job:
    image: {busybox}
    command: ["sh", "-c", "exit {job_rc}"]
    depends_on: {{db: {{condition: service_healthy}}}}
  app:
    image: {busybox}
    command: ["sleep", "600"]
    depends_on: {{job: {{condition: service_completed_successfully}}}}
"""


@pytest.mark.parametrize("job_rc", [0, 3])
def test_compose_shim_up_wait_follows_v2_semantics(testhost, job_rc):
    compose = COMPOSE.format(postgres=testhost.images["postgres"], busybox=testhost.images["busybox"],
                             job_rc=job_rc)
    testhost.run("mkdir -p /root/shimcheck")
    testhost.put_file("/root/shimcheck/compose.yaml", compose)
    try:
        up = testhost.ssh("cd /root/shimcheck && docker compose up -d --wait --wait-timeout 60", timeout=120)
        if job_rc == 0:
            assert up.rc == 0, up.stderr
            db = testhost.run("cd /root/shimcheck && docker compose ps -q db").stdout.strip()
            health = testhost.run(f"docker inspect --format '{{{{.State.Health.Status}}}}' {db}").stdout
            assert health.strip() == "healthy"
        else:
            # v1 itself refuses the dependant ("exited with code 3"); the shim's --wait says "exited (3)"
            assert up.rc != 0 and ("exited (3)" in up.stderr or "exited with code 3" in up.stderr)
            # v2 semantics: ps shows running containers only, -a (also as -aq) shows the exited one
            assert testhost.run("cd /root/shimcheck && docker compose ps -q job").stdout == ""
            assert testhost.run("cd /root/shimcheck && docker compose ps -aq job").stdout.strip() != ""
    finally:
        down = testhost.ssh("docker compose --project-directory /root/shimcheck down -v", timeout=60)
    assert down.rc == 0, down.stderr
    assert testhost.run("docker ps -aq --filter label=com.docker.compose.project=shimcheck").stdout == ""


def test_compose_version_reports_v2(testhost):
    assert testhost.run("docker compose version --short").stdout.strip().startswith("2.")


# ------------------------------------------------------------------------ app, sentry

def test_pm2_app_reports_an_error_to_the_sentry_stand_in(testhost):
    marker = f"tm-{uuid.uuid4().hex[:12]}"
    health = json.loads(testhost.run("curl -fsS http://127.0.0.1:3000/health").stdout)
    assert health["dsnHost"] == "127.0.0.1:9000" and testhost.sentry.key not in json.dumps(health)
    boom = json.loads(testhost.run(f"curl -sS 'http://127.0.0.1:3000/boom?marker={marker}'").stdout)
    assert boom["flushed"] is True and boom["marker"] == marker

    def arrived():
        return [r for r in testhost.sentry.received() if marker.encode() in r["body"]]
    hits = _wait(arrived, 15, f"envelope with {marker}")
    req = hits[0]
    assert req["method"] == "POST" and req["path"] == f"/api/{testhost.sentry.project_id}/envelope/"
    assert req["query"]["sentry_key"] == [testhost.sentry.key] and req["status"] == 200
    assert boom["eventId"].replace("-", "") in req["body"].decode()


def test_pm2_runs_the_production_process_names_from_a_saved_list(testhost):
    procs = json.loads(testhost.run("pm2 jlist").stdout)
    assert {p["name"]: p["pm2_env"]["status"] for p in procs} == {n: "online" for n in th.APP_PROCESSES}
    dump = testhost.read_file("/root/.pm2/dump.pm2")
    assert b"ai-admin-worker-v2" in dump and b"SENTRY_DSN" not in dump  # clean start: no env trap yet
    env = testhost.read_file(f"{th.APP_DIR}/.env").decode()
    assert f"SENTRY_DSN={testhost.sentry.dsn}\n" in env
    assert testhost.stat(f"{th.APP_DIR}/.env").st_mode & 0o777 == 0o600


# ------------------------------------------------------------------------------ cron

def test_cron_runs_jobs(testhost, cron_probe):
    def fired():
        r = testhost.ssh(f"cat {CRON_PROBE}")
        return r.rc == 0 and r.stdout.split()
    stamps = _wait(fired, max(5.0, 75 - (time.time() - cron_probe)), "cron job output")
    assert int(stamps[0]) >= int(cron_probe) - 1


# -------------------------------------------------------------------------- teardown

def test_teardown_leaves_nothing_behind(testhost_prerequisites):
    second = th.TestHost(app=False)
    second.up()
    try:
        mine = [x for x in th.leftovers() if second.name in x]
        kinds = {x.split()[0] for x in mine}
        assert {"process", "netns", "link", "mount", "dir"} <= kinds, mine  # the check can see it
    finally:
        second.down()
    assert [x for x in th.leftovers() if second.name in x] == []
    assert second.timings["teardown"] < 30
