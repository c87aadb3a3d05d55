"""Every bad config value stops the program with one sentence naming the key, before any resource."""

from __future__ import annotations

import re

import pytest
import yaml

from components import settings as settings_module
from components.settings import ConfigError, check_cron, cron_hours, memory_plan, project_defaults
from tests.harness import ROOT, SENTRY_DSN, TEST_HOST_KEY, prod_config, run_program


def _error_for(**overrides) -> ConfigError:
    program = run_program(prod_config(**overrides))
    assert isinstance(program.error, ConfigError), f"expected a ConfigError, got {program.error!r}"
    assert program.registrations == [], "resources were registered before the config was validated"
    return program.error


CASES = [
    # (overrides, key named, words the fix must contain)
    (dict(host=None), "host", "pulumi config set host"),
    (dict(host="bad host!"), "host", "IP address or a DNS name"),
    (dict(sshPort=70000), "sshPort", "between 1 and 65535"),
    (dict(sshPort="22.5"), "sshPort", "whole number"),
    (dict(glitchtipPort=0), "glitchtipPort", "between 1 and 65535"),
    (dict(sshUser="Root User"), "sshUser", "Unix user name"),
    (dict(sshHostKey=None), "sshHostKey", "ssh-keyscan"),
    (dict(sshHostKey="ssh-ed25519 notbase64!!"), "sshHostKey", "authorized_keys format"),
    (dict(sshHostKey="ssh-rsa " + TEST_HOST_KEY.split()[1]), "sshHostKey", "authorized_keys format"),
    (dict(sshPrivateKey=None), "sshPrivateKey", "--secret sshPrivateKey"),
    (dict(sshPrivateKey="not a key"), "sshPrivateKey", "PRIVATE KEY"),
    (dict(sshPrivateKeyPath="/nonexistent/key"), "sshPrivateKeyPath", "must be empty when sshPrivateKey"),
    (dict(sentryDsn=None), "sentryDsn", "pulumi config set --secret sentryDsn"),
    (dict(sentryDsn="https://sentry.io/123"), "sentryDsn", "Client Keys"),
    (dict(sentryDsn="ftp://abcdefabcdefabcdef@sentry.io/1"), "sentryDsn", "Client Keys"),
    (dict(sentryDsn="https://abcdefabcdefabcdefab@sentry.io/notanumber"), "sentryDsn", "Client Keys"),
    (dict(glitchtipDsn="http://127.0.0.1:8000/1"), "glitchtipDsn", "Client Keys"),
    (dict(dsnTarget="glitchtop"), "dsnTarget", "sentry, glitchtip"),
    (dict(exposure="public"), "exposure", "tunnel, tls"),
    (dict(exposure="tls"), "domain", "required when exposure is tls"),
    (dict(exposure="tls", domain="203.0.113.5"), "domain", "DNS name"),
    (dict(serverMode="micro"), "serverMode", "all-in-one, split"),
    (dict(memoryBudgetMb=512), "memoryBudgetMb", "at least 736"),  # 512 + 192 + the relay's 32
    (dict(memoryBudgetMb=900, serverMode="split"), "memoryBudgetMb", "at least 1120"),
    (dict(retentionDays=0), "retentionDays", "between 1 and 3650"),
    (dict(backupRetentionDays=-3), "backupRetentionDays", "between 1 and 3650"),
    (dict(backupSchedule="0 2 * *"), "backupSchedule", "five-field"),
    (dict(backupSchedule="61 2 * * *"), "backupSchedule", "out of range 0-59"),
    (dict(backupSchedule="0 2 * * * %"), "backupSchedule", "without '%'"),
    (dict(adminEmail=None), "adminEmail", "pulumi config set adminEmail"),
    (dict(adminEmail="admin@host.local"), "adminEmail", "rejects .local"),
    (dict(glitchtipVersion="5.2.0"), "glitchtipVersion", "6.0.0 or newer"),
    (dict(glitchtipVersion="6"), "glitchtipVersion", "exact GlitchTip release"),
    (dict(glitchtipImage="glitchtip/glitchtip:6.2.6"), "glitchtipImage", "pinned by digest"),
    (dict(postgresImage="postgres:latest"), "postgresImage", "pinned by digest"),
    (dict(appEnvFile="relative/.env"), "appEnvFile", "absolute path"),
    (dict(appEnvFile="/opt/app/../etc/.env"), "appEnvFile", "absolute path"),
    (dict(appPm2Apps=["ok", "bad name"]), "appPm2Apps", "PM2 process names"),
    (dict(appRestartCommand="pm2 restart all\nrm -rf /"), "appRestartCommand", "single line"),
    (dict(smtpUrl="http://mail.example.com"), "smtpUrl", "EMAIL_URL"),
    (dict(dockerVersion="latest"), "dockerVersion", "28.5.2"),
    (dict(valkey="maybe"), "valkey", "true or false"),
    (dict(deleteDataOnDestroy="yes"), "deleteDataOnDestroy", "true or false"),
    (dict(alerts=["Critical: lots of events"]), "alerts", "'NAME: N events in M minutes'"),
    (dict(alerts=["Slow: 5 events in 99999 minutes"]), "alerts", "M up to 10080"),
    (dict(alerts="new issue"), "alerts", "list of strings"),
    (dict(uptimeMonitors=["api https://x.example.com"]), "uptimeMonitors", "NAME=https://"),
    (dict(alertWebhookUrl="hooks.example.com/x"), "alertWebhookUrl", "http(s) URL"),
    (dict(teamSlug="Ops Team"), "teamSlug", "lowercase letters"),
    (dict(projectName=""), "projectName", "1 to 64 characters"),
]


@pytest.mark.parametrize("overrides,key,fix", CASES, ids=[c[1] + "-" + str(i) for i, c in enumerate(CASES)])
def test_bad_value_fails_with_one_sentence_naming_the_key(overrides, key, fix):
    message = str(_error_for(**overrides))
    assert message.startswith(f"Config key '{key}' "), message
    assert fix in message, message
    assert message.count("\n") == 0 and message.endswith("."), f"not one sentence: {message!r}"


def test_secret_values_are_never_echoed_in_errors():
    secret_like = "https://zzzzsecretzzzzsecretzzzz@sentry.io/oops"
    message = str(_error_for(sentryDsn=secret_like))
    assert "zzzzsecret" not in message


def test_a_secret_set_in_plain_text_is_refused():
    program = run_program(prod_config(), secret_keys=("sshPrivateKey",))
    assert isinstance(program.error, ConfigError)
    assert "must be stored encrypted" in str(program.error) and "'sentryDsn'" in str(program.error)


def test_private_key_from_path(tmp_path):
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(prod_config()["sshPrivateKey"])
    program = run_program(prod_config(sshPrivateKey=None, sshPrivateKeyPath=str(key_file)))
    assert program.error is None, program.error
    connection = program.named("vps-preflight").inputs["connection"]
    assert connection["privateKey"] == key_file.read_text()
    assert "connection" in program.named("vps-preflight").secret_inputs


def test_missing_private_key_file_is_named(tmp_path):
    program = run_program(prod_config(sshPrivateKey=None, sshPrivateKeyPath=str(tmp_path / "missing")))
    assert isinstance(program.error, ConfigError)
    assert str(program.error).startswith("Config key 'sshPrivateKeyPath' must name a readable")


def test_valid_prod_config_loads():
    program = run_program(prod_config())
    assert program.error is None, program.error


def test_defaults_come_from_pulumi_yaml():
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert project_defaults()["dsnTarget"] == declared["dsnTarget"]["default"] == "sentry"
    required = sorted(k for k, spec in declared.items() if "default" not in spec)
    assert required == ["adminEmail", "host", "sentryDsn", "sshHostKey"]
    assert declared["sentryDsn"].get("secret") is True


def test_every_declared_key_is_documented_and_camel_case():
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    for key, spec in declared.items():
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", key), key
        assert spec.get("description", "").strip(), f"{key} has no description"
        assert spec.get("type") in ("string", "integer", "boolean", "array"), key


@pytest.mark.parametrize("mode,valkey,exposure", [("all-in-one", False, "tunnel"), ("split", True, "tls")])
def test_memory_plan_stays_within_budget(mode, valkey, exposure):
    floor = sum(settings_module.MEMORY_FLOOR_MB[s] for s in settings_module.services_for(mode, valkey, exposure))
    for budget in (floor, floor + 333, 4096):
        plan = memory_plan(mode, valkey, exposure, budget)
        assert sum(plan.values()) <= budget
        assert all(plan[s] >= settings_module.MEMORY_FLOOR_MB[s] for s in plan)
        assert set(plan) == set(settings_module.services_for(mode, valkey, exposure))
    assert memory_plan(mode, valkey, exposure, 4096)["postgres"] > settings_module.MEMORY_FLOOR_MB["postgres"]


def test_cron_schedule_parsing():
    assert check_cron("k", "0  2 * * *") == "0 2 * * *"
    assert check_cron("k", "30 1-3/2 * jan-mar mon,fri") == "30 1-3/2 * jan-mar mon,fri"
    assert cron_hours("0 2 * * *") == {2}
    assert cron_hours("0 */6 * * *") == {0, 6, 12, 18}
    assert cron_hours("0 4-6 * * *") == {4, 5, 6}
    assert cron_hours("*/5 * * * *") is None
    for bad in ("0 2 * * 8", "0 24 * * *", "0 5-3 * * *", "0 2 */0 * *", "@daily"):
        with pytest.raises(ConfigError):
            check_cron("backupSchedule", bad)


def test_alert_and_monitor_entries_parse():
    assert settings_module.check_alert("alerts", "Critical Errors: 10 events in 60 minutes") == settings_module.AlertRule("Critical Errors", 10, 60)
    assert settings_module.check_alert("alerts", "New Issues:  new issue") == settings_module.AlertRule("New Issues", 1, 1)
    assert settings_module.check_monitor("m", "api = https://api.example.com/health") == ("api", "https://api.example.com/health")


def test_dsn_check_accepts_sentry_and_glitchtip_forms():
    assert settings_module.check_dsn("k", SENTRY_DSN) == SENTRY_DSN
    assert settings_module.check_dsn("k", "http://0123456789abcdef0123456789abcdef@127.0.0.1:8000/1")
