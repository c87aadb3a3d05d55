"""remote-host-verified, secret-steps-log-nothing, no-secrets-in-commands: one happy path,
then one change per spec with the exact message it must produce (and never a secret in it)."""

from __future__ import annotations

from typing import Any

import pytest

from components.remote import render_script
from tests.policy import builders as b
from tests.policy.support import Outcome, Resource, check, check_stack

UNKNOWN = b.UNKNOWN


def assert_no_secret_in(outcome: Outcome) -> None:
    text = "\n".join(outcome.messages + outcome.skipped)
    for secret in b.SECRETS:
        assert secret not in text, "a violation message echoes a secret value"


# ---------------------------------------------------------------------------- remote-host-verified

HOST_RULE = "remote-host-verified"


def api_resource(connection: Any) -> Resource:
    """A GlitchTip API resource (dynamic provider) with its `connection` property."""
    return Resource(type="pulumi-python:dynamic:Resource", name="glitchtip-org", props={"name": "acme", "connection": connection})


def test_host_key_happy_path() -> None:
    assert check(HOST_RULE, b.docker()).violations == []


@pytest.mark.parametrize(
    "connection",
    [
        {"sshHost": b.HOST, "sshHostKey": b.HOST_KEY, "sshPrivateKey": b.PRIVATE_KEY, "remotePort": 8000},
        {"baseUrl": "https://glitchtip.example.com"},
        {"baseUrl": "http://127.0.0.1:8000"},
    ],
    ids=["ssh-tunnel", "https", "loopback"],
)
def test_api_resources_that_verify_the_server_pass(connection: dict) -> None:
    assert check(HOST_RULE, api_resource(connection)).violations == []


def test_resources_without_a_connection_are_not_concerned() -> None:
    assert check(HOST_RULE, b.random_password("pw", b.POSTGRES_PASSWORD)).violations == []


@pytest.mark.parametrize("host_key", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_command_without_host_key_is_refused(host_key: str | None) -> None:
    conn = b.connection(hostKey=host_key) if host_key is not None else b.connection(hostKey=None)
    outcome = check(HOST_RULE, b.command("step", "preflight.sh", conn=conn))
    assert outcome.messages == ["The connection must pin the server's host key (hostKey)."]


def test_a_host_key_that_is_not_a_key_is_refused() -> None:
    outcome = check(HOST_RULE, b.command("step", "preflight.sh", conn=b.connection(hostKey="trust-me-s3cr3t")))
    assert outcome.messages == ["The connection's host key (hostKey) must be one authorized_keys entry such as 'ssh-ed25519 AAAA...'."]
    assert "trust-me-s3cr3t" not in outcome.messages[0]


def test_an_unknown_host_key_is_a_violation_not_a_skip() -> None:
    outcome = check(HOST_RULE, b.command("step", "preflight.sh", conn=b.connection(hostKey=UNKNOWN)))
    assert outcome.messages == ["The server's host key (hostKey) must be known at preview: set it in config, not from another resource."]
    assert outcome.skipped == []


def test_an_unknown_connection_is_a_violation() -> None:
    outcome = check(HOST_RULE, b.command("step", "preflight.sh", conn=UNKNOWN))  # type: ignore[arg-type]
    assert outcome.messages == ["The connection must be known at preview: build it from config, not from another resource."]


def test_a_jump_host_must_be_verified_too() -> None:
    conn = b.connection(proxy={"host": "198.51.100.1", "user": "jump", "privateKey": b.PRIVATE_KEY})
    outcome = check(HOST_RULE, b.command("step", "preflight.sh", conn=conn))
    assert outcome.messages == ["The connection must pin the server's host key (proxy.hostKey)."]


def test_an_api_tunnel_without_host_key_is_refused() -> None:
    outcome = check(HOST_RULE, api_resource({"sshHost": b.HOST, "sshPrivateKey": b.PRIVATE_KEY}))
    assert outcome.messages == ["The connection must pin the server's host key (sshHostKey)."]


def test_a_plain_http_api_url_is_refused() -> None:
    outcome = check(HOST_RULE, api_resource({"baseUrl": "http://203.0.113.10:8000"}))
    assert outcome.messages == ["The API connection must use an https baseUrl (or a loopback one) so the server is verified."]


# ---------------------------------------------------------------------------- secret-steps-log-nothing

LOG_RULE = "secret-steps-log-nothing"


def test_logging_happy_paths() -> None:
    assert check(LOG_RULE, b.deploy()).violations == []
    assert check(LOG_RULE, b.docker()).violations == []  # no stdin: logs are fine


@pytest.mark.parametrize("logging", ["stdoutAndStderr", "stdout", "stderr", None])
def test_a_step_reading_stdin_must_log_nothing(logging: str | None) -> None:
    step = b.command("step", "set-dsn.sh", stdin="DSN=x\n", logging=logging)  # None: absent, the provider logs both
    assert check(LOG_RULE, step).messages == ["A step that reads secrets on stdin must set logging to none."]


def test_a_step_reading_stdin_must_keep_its_output_secret() -> None:
    step = b.command("step", "set-dsn.sh", stdin="DSN=x\n")
    step.additional_secret_outputs = ["stdout"]
    assert check(LOG_RULE, step).messages == ["A step that reads secrets on stdin must mark stdout and stderr as secret outputs."]


def test_an_unknown_stdin_still_counts_as_secret_input() -> None:
    step = b.command("step", "deploy-stack.sh", stdin=UNKNOWN, secret=False)
    assert check(LOG_RULE, step).messages == [
        "A step that reads secrets on stdin must set logging to none.",
        "A step that reads secrets on stdin must mark stdout and stderr as secret outputs.",
    ]


def test_an_unknown_logging_setting_is_a_violation() -> None:
    step = b.command("step", "set-dsn.sh", stdin="DSN=x\n", logging=UNKNOWN)
    outcome = check(LOG_RULE, step)
    assert outcome.messages == ["The logging setting of a step that reads stdin must be known at preview."]
    assert outcome.skipped == []


# ---------------------------------------------------------------------------- no-secrets-in-commands

SECRETS_RULE = "no-secrets-in-commands"


def with_arg(resource: Resource, prop: str, extra: str) -> Resource:
    """RESOURCE with EXTRA appended as an argument of its PROP command (create/update/delete)."""
    from policies.commandline import parse_command

    script, args = parse_command(resource.props[prop])
    resource.props[prop] = render_script(script, [*args, extra])
    return resource


def test_secrets_happy_path() -> None:
    outcome = check_stack(SECRETS_RULE, b.stack())
    assert outcome.violations == [] and outcome.skipped == []


def test_a_generated_password_in_the_command_is_refused() -> None:
    deploy = b.deploy()
    with_arg(deploy, "create", b.ADMIN_PASSWORD)
    with_arg(deploy, "update", b.ADMIN_PASSWORD)
    outcome = check_stack(SECRETS_RULE, b.stack(deploy=deploy))
    assert outcome.violations == [
        ("The create command must not contain a generated secret: pass secrets on stdin.", deploy.urn),
        ("The update command must not contain a generated secret: pass secrets on stdin.", deploy.urn),
    ]
    assert_no_secret_in(outcome)


def test_a_value_from_stdin_in_the_command_is_refused() -> None:
    """Without the random resources (another stack's state), stdin alone still names the password."""
    deploy = with_arg(b.deploy(), "create", b.ADMIN_PASSWORD)
    outcome = check_stack(SECRETS_RULE, [deploy])
    assert outcome.violations == [("The create command must not contain a value its stdin carries: pass secrets on stdin.", deploy.urn)]
    assert_no_secret_in(outcome)


def test_a_secret_of_the_env_file_on_stdin_is_recognised() -> None:
    """EMAIL_URL (the SMTP password) only exists inside .env, base64-encoded on stdin."""
    docker = with_arg(b.docker(), "create", b.SMTP_URL)
    outcome = check_stack(SECRETS_RULE, b.stack(docker=docker))
    assert outcome.violations == [("The create command must not contain a value its stdin carries: pass secrets on stdin.", docker.urn)]
    assert_no_secret_in(outcome)


def test_a_generated_secret_in_a_delete_command_is_refused() -> None:
    docker = b.docker()
    docker.props["delete"] = render_script("uninstall-docker.sh", ["--token", "Gen3ratedSecretValue0123456789ab"])
    outcome = check_stack(SECRETS_RULE, [docker, b.random_password("token", "Gen3ratedSecretValue0123456789ab")])
    assert outcome.violations == [("The delete command must not contain a generated secret: pass secrets on stdin.", docker.urn)]


def test_the_connection_private_key_in_a_command_is_refused() -> None:
    docker = with_arg(b.docker(), "create", b.PRIVATE_KEY)
    outcome = check_stack(SECRETS_RULE, [docker])
    assert outcome.messages == ["The create command must not contain an SSH credential: pass secrets on stdin."]
    assert_no_secret_in(outcome)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "a private key block"),
        ("https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/42", "a DSN with its key"),
        ("/api/1/envelope/?sentry_key=abc123", "a sentry_key parameter"),
        ("ADMIN_PASSWORD=hunter2", "a PASSWORD= assignment"),
        ("postgres://glitchtip:hunter2@postgres:5432/glitchtip", "a URL with a password"),
    ],
    ids=["pem", "dsn", "sentry-key", "password-assignment", "url-password"],
)
def test_secret_looking_arguments_are_refused(text: str, kind: str) -> None:
    docker = with_arg(b.docker(), "create", text)
    outcome = check_stack(SECRETS_RULE, [docker])
    assert outcome.messages == [f"The create command must not contain {kind}: pass secrets on stdin."]
    assert "hunter2" not in outcome.messages[0] and "0123456789abcdef" not in outcome.messages[0]


@pytest.mark.parametrize(
    "text",
    ["PASSWORD=$ADMIN_PASSWORD", "PASSWORD=", "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?is missing from .env}", "redis://valkey:6379/0"],
)
def test_references_to_secrets_are_not_secrets(text: str) -> None:
    assert check_stack(SECRETS_RULE, [with_arg(b.docker(), "create", text)]).violations == []


def test_a_script_carried_as_an_argument_is_code_but_its_values_are_still_searched() -> None:
    """install-backup.sh carries the restore.sh it installs, which writes a POSTGRES_PASSWORD= line."""
    script = "#!/usr/bin/env bash\nprintf 'POSTGRES_PASSWORD=%s\\n' \"$(random_hex 16)\" >\"$ENV_FILE\"\n"
    assert check_stack(SECRETS_RULE, [with_arg(b.docker(), "create", script)]).violations == []
    assert check_stack(SECRETS_RULE, [with_arg(b.docker(), "create", "ADMIN_" + script.splitlines()[1])]).messages == [
        "The create command must not contain a PASSWORD= assignment: pass secrets on stdin."
    ]
    leaky = with_arg(b.docker(), "create", script + f"PGPASSWORD={b.ADMIN_PASSWORD}\n")
    outcome = check_stack(SECRETS_RULE, [leaky, b.random_password("admin", b.ADMIN_PASSWORD)])
    assert outcome.messages == ["The create command must not contain a generated secret: pass secrets on stdin."]
    assert_no_secret_in(outcome)


def test_patterns_apply_to_whole_strings_that_are_not_rendered_scripts() -> None:
    step = b.command("legacy", "x", create="curl -u admin:PASSWORD=hunter2 https://example.com")
    outcome = check_stack(SECRETS_RULE, [step])
    assert outcome.messages == [
        "The create command must not contain a PASSWORD= assignment: pass secrets on stdin.",
        "The update command must not contain a PASSWORD= assignment: pass secrets on stdin.",
    ]


def test_short_values_are_not_searched_unless_configured() -> None:
    docker = with_arg(b.docker(), "create", "abc12")
    resources = [docker, b.command("other", "set-dsn.sh", stdin="TOKEN=abc12\n")]
    assert check_stack(SECRETS_RULE, resources).violations == []
    assert check_stack(SECRETS_RULE, resources, {"minSecretLength": 5.0}).messages == [
        "The create command must not contain a value its stdin carries: pass secrets on stdin."
    ]


def test_an_unknown_command_is_skipped_with_its_reason_after_the_known_ones_are_checked() -> None:
    unknown = b.command("app-dsn-set", "set-dsn.sh", create=UNKNOWN, stdin="DSN=x\n")
    leaky = with_arg(b.docker(), "create", b.ADMIN_PASSWORD)
    outcome = check_stack(SECRETS_RULE, [unknown, leaky, b.random_password("admin", b.ADMIN_PASSWORD)])
    assert outcome.violations == [("The create command must not contain a generated secret: pass secrets on stdin.", leaky.urn)]
    assert outcome.skipped == [
        "app-dsn-set.create is only known once the resources it reads exist; it is checked at `pulumi up`",
        "app-dsn-set.update is only known once the resources it reads exist; it is checked at `pulumi up`",
    ]


def test_secrets_not_generated_yet_need_no_check() -> None:
    """First preview: random values and the stdin made of them are unknown; the known
    command strings cannot contain them, so nothing is skipped or reported."""
    deploy = b.deploy(stdin=UNKNOWN)
    resources = b.stack(
        deploy=deploy,
        secret_key=b.random_bytes("glitchtip-secret-key", None),
        postgres_password=b.random_password("glitchtip-postgres-password", None),
        admin_password=b.random_password("glitchtip-admin-password", None),
    )
    outcome = check_stack(SECRETS_RULE, resources)
    assert outcome.violations == [] and outcome.skipped == []
