"""images-pinned-by-digest, memory-within-budget, loopback-only-ports, registration-closed:
the deploy step's compose.yaml (its last argument) and .env (stdin), one change per spec."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policy import builders as b
from tests.policy.support import check

UNKNOWN = b.UNKNOWN
COMPOSE_RULES = ["images-pinned-by-digest", "memory-within-budget", "loopback-only-ports", "registration-closed"]


def service(name: str, **changes: Any):
    """A mutation setting (or, with None, removing) keys of one compose service."""

    def mutate(document: dict) -> None:
        for key, value in changes.items():
            if value is None:
                document["services"][name].pop(key, None)
            else:
                document["services"][name][key] = value

    return mutate


def env_set(name: str, **values: Any):
    def mutate(document: dict) -> None:
        environment = document["services"][name]["environment"]
        for key, value in values.items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value

    return mutate


# ---------------------------------------------------------------------------- shared: reading compose.yaml


@pytest.mark.parametrize("rule", COMPOSE_RULES)
@pytest.mark.parametrize(
    "document",
    [
        b.compose_document(),
        b.compose_document(server_mode="split", valkey=True, budget=1024 + 512),
        b.compose_document(tls=True),
    ],
    ids=["all-in-one", "split-valkey", "tls"],
)
def test_happy_paths(rule: str, document: dict) -> None:
    outcome = check(rule, b.deploy(document), {"memoryBudgetMb": 1536})
    assert outcome.violations == [] and outcome.skipped == []


@pytest.mark.parametrize("rule", COMPOSE_RULES)
def test_other_commands_are_not_concerned(rule: str) -> None:
    assert check(rule, b.backup()).violations == []


@pytest.mark.parametrize("rule", COMPOSE_RULES)
def test_compose_on_stdin_is_read_when_it_is_not_an_argument(rule: str) -> None:
    assert check(rule, b.deploy(compose_in="stdin")).violations == []


@pytest.mark.parametrize(
    ("rule", "what"),
    [
        ("images-pinned-by-digest", "images"),
        ("memory-within-budget", "memory limits"),
        ("loopback-only-ports", "published ports"),
        ("registration-closed", "registration settings"),
    ],
)
def test_compose_only_on_an_unknown_stdin_cannot_be_checked_and_says_so(rule: str, what: str) -> None:
    outcome = check(rule, b.deploy(compose_in="stdin", stdin=UNKNOWN))
    assert outcome.messages == [f"The compose file must be known at preview (deploy-stack.sh's last argument) for {what} to be checked."]
    assert outcome.skipped == []


@pytest.mark.parametrize("rule", COMPOSE_RULES)
def test_an_unreadable_compose_file_is_a_violation(rule: str) -> None:
    outcome = check(rule, b.deploy(compose_text="services: [not, a, mapping]"))
    assert outcome.messages == ["The compose file must be YAML with a services mapping (deploy-stack.sh's last argument)."]


@pytest.mark.parametrize("rule", COMPOSE_RULES)
def test_an_unknown_command_string_is_skipped_with_its_reason(rule: str) -> None:
    outcome = check(rule, b.command("glitchtip-deploy", "deploy-stack.sh", create=UNKNOWN, stdin=UNKNOWN))
    assert outcome.violations == []
    assert len(outcome.skipped) == 1 and outcome.skipped[0].startswith("glitchtip-deploy: its command is only known once")


# ---------------------------------------------------------------------------- images-pinned-by-digest

IMAGES = "images-pinned-by-digest"


def test_an_image_without_digest_is_refused() -> None:
    outcome = check(IMAGES, b.deploy(mutate=service("postgres", image="postgres:18")))
    assert outcome.messages == ["Service 'postgres' image must be pinned by digest (name:tag@sha256:...)."]


def test_a_latest_tag_is_refused_even_with_a_digest() -> None:
    image = f"glitchtip/glitchtip:latest@{b.digest('x')}"
    outcome = check(IMAGES, b.deploy(mutate=service("glitchtip", image=image)))
    assert outcome.messages == ["Service 'glitchtip' image must not use the latest tag."]


def test_a_floating_latest_tag_breaks_both_rules() -> None:
    outcome = check(IMAGES, b.deploy(mutate=service("glitchtip", image="glitchtip/glitchtip:latest")))
    assert outcome.messages == [
        "Service 'glitchtip' image must not use the latest tag.",
        "Service 'glitchtip' image must be pinned by digest (name:tag@sha256:...).",
    ]


def test_a_malformed_digest_is_refused() -> None:
    outcome = check(IMAGES, b.deploy(mutate=service("postgres", image="postgres:18@sha256:abc")))
    assert outcome.messages == ["Service 'postgres' image must be pinned by digest (name:tag@sha256:...)."]


def test_a_built_service_is_refused() -> None:
    outcome = check(IMAGES, b.deploy(mutate=service("glitchtip", image=None, build=".")))
    assert outcome.messages == ["Service 'glitchtip' must run an image pinned by digest (name:tag@sha256:...), not a build."]


def test_a_service_outside_the_design_is_named_generically() -> None:
    def add_sidecar(document: dict) -> None:
        document["services"]["s3cr3t-sidecar"] = {"image": "busybox", "mem_limit": "1m"}

    outcome = check(IMAGES, b.deploy(mutate=add_sidecar))
    assert outcome.messages == ["A service image must be pinned by digest (name:tag@sha256:...)."]


# ---------------------------------------------------------------------------- memory-within-budget

MEMORY = "memory-within-budget"


def test_a_service_without_memory_limit_is_refused() -> None:
    outcome = check(MEMORY, b.deploy(mutate=service("postgres", mem_limit=None)))
    assert outcome.messages == ["Service 'postgres' must have a memory limit (mem_limit)."]


def test_a_deploy_resources_limit_counts_as_a_limit() -> None:
    mutate = service("postgres", mem_limit=None, memswap_limit=None, deploy={"resources": {"limits": {"memory": "256M"}}})
    assert check(MEMORY, b.deploy(mutate=mutate)).violations == []


def test_an_unreadable_limit_is_refused() -> None:
    outcome = check(MEMORY, b.deploy(mutate=service("postgres", mem_limit="plenty")))
    assert outcome.messages == ["Service 'postgres' memory limit must be a size such as 512m."]


def test_limits_over_the_budget_are_refused() -> None:
    outcome = check(MEMORY, b.deploy(mutate=service("glitchtip", mem_limit="1g")))
    assert outcome.messages == ["The services' memory limits must add up to no more than the memory budget (memoryBudgetMb)."]


@pytest.mark.parametrize(("budget", "expected"), [(2048.0, []), (512.0, ["The services' memory limits must add up to no more than the memory budget (memoryBudgetMb)."])])
def test_without_a_declared_budget_it_comes_from_the_pack_config(budget: float, expected: list[str]) -> None:
    assert check(MEMORY, b.deploy(b.compose_document(declare_budget=False)), {"memoryBudgetMb": budget}).messages == expected


def test_the_budget_the_program_declares_in_compose_wins() -> None:
    over = ["The services' memory limits must add up to no more than the memory budget (memoryBudgetMb)."]
    big = b.compose_document(budget=2048)
    assert big["x-memory-budget-mb"] == 2048  # components/stack.py declares settings.memory_budget_mb
    assert check(MEMORY, b.deploy(big)).violations == []
    assert check(MEMORY, b.deploy(big), {"memoryBudgetMb": 512.0}).violations == []
    big["x-memory-budget-mb"] = 1024  # limits planned for 2048 exceed the declared budget
    assert check(MEMORY, b.deploy(big)).messages == over
    assert check(MEMORY, b.deploy(big), {"memoryBudgetMb": 4096.0}).messages == over
    del big["x-memory-budget-mb"]
    assert check(MEMORY, b.deploy(big)).messages == over
    assert check(MEMORY, b.deploy(big), {"memoryBudgetMb": 2048.0}).violations == []


@pytest.mark.parametrize(("limit", "ok"), [("1024m", True), ("1g", True), ("1.5g", False), (1024 * 2**20, True), ("1025MB", False)])
def test_sizes_in_every_compose_unit(limit: Any, ok: bool) -> None:
    def only_one(document: dict) -> None:
        document["services"] = {"glitchtip": {**document["services"]["glitchtip"], "mem_limit": limit}}

    assert (check(MEMORY, b.deploy(mutate=only_one)).violations == []) is ok


# ---------------------------------------------------------------------------- loopback-only-ports

PORTS = "loopback-only-ports"


@pytest.mark.parametrize(
    "ports",
    [["8000:8000"], ["0.0.0.0:8000:8000"], ["8000"], [8000], ["[::]:8000:8000"], [{"target": 8000, "published": 8000}]],
    ids=["host-port", "any-address", "random-port", "number", "ipv6-any", "long-syntax"],
)
def test_glitchtip_published_beyond_loopback_is_refused(ports: list) -> None:
    outcome = check(PORTS, b.deploy(mutate=service("glitchtip", ports=ports)))
    assert outcome.messages == ["Service 'glitchtip' must publish its ports on 127.0.0.1 only."]


@pytest.mark.parametrize(
    "ports",
    [["127.0.0.1:8000:8000"], ["127.0.0.1:8000:8000/tcp"], ["[::1]:8000:8000"], [{"target": 8000, "published": 8000, "host_ip": "127.0.0.1"}]],
)
def test_loopback_publishing_passes(ports: list) -> None:
    assert check(PORTS, b.deploy(mutate=service("glitchtip", ports=ports))).violations == []


def test_host_networking_is_refused() -> None:
    outcome = check(PORTS, b.deploy(mutate=service("postgres", network_mode="host")))
    assert outcome.messages == ["Service 'postgres' must not use the host's network (network_mode: host)."]


@pytest.mark.parametrize("ports", [["${BIND_ADDRESS}:8000:8000"], "127.0.0.1:8000:8000", ["1:2:3:4"]], ids=["interpolated", "not-a-list", "malformed"])
def test_unreadable_port_entries_are_refused(ports: Any) -> None:
    outcome = check(PORTS, b.deploy(mutate=service("glitchtip", ports=ports)))
    assert outcome.messages == ["Service 'glitchtip' must publish its ports as literal 127.0.0.1:PORT:PORT entries."]


def test_with_tls_glitchtip_itself_still_stays_on_loopback() -> None:
    outcome = check(PORTS, b.deploy(b.compose_document(tls=True), mutate=service("glitchtip", ports=["8000:8000"])))
    assert outcome.messages == ["Service 'glitchtip' must publish its ports on 127.0.0.1 only."]


def test_with_tls_the_proxy_publishes_only_80_and_443() -> None:
    outcome = check(PORTS, b.deploy(b.compose_document(tls=True), mutate=service("caddy", ports=["80:80", "443:443", "2019:2019"])))
    assert outcome.messages == ["Service 'caddy' must publish only ports 80 and 443 beyond 127.0.0.1."]


def test_the_proxy_may_publish_its_admin_port_on_loopback() -> None:
    mutate = service("caddy", ports=["80:80", "443:443", "127.0.0.1:2019:2019"])
    assert check(PORTS, b.deploy(b.compose_document(tls=True), mutate=mutate)).violations == []


def test_without_tls_the_proxy_may_not_publish() -> None:
    """A proxy added to a tunnel stack (GLITCHTIP_DOMAIN still the loopback URL) opens nothing."""

    def tunnel_with_proxy(document: dict) -> None:
        for name in ("glitchtip",):
            document["services"][name]["environment"]["GLITCHTIP_DOMAIN"] = "http://127.0.0.1:8000"

    outcome = check(PORTS, b.deploy(b.compose_document(tls=True), mutate=tunnel_with_proxy))
    assert outcome.messages == ["Service 'caddy' must publish its ports on 127.0.0.1 only unless exposure is tls."]


def test_the_proxy_service_and_ports_come_from_config() -> None:
    mutate = service("caddy", ports=["80:80", "443:443", "8443:8443"])
    config = {"proxyPorts": [80.0, 443.0, 8443.0]}
    assert check(PORTS, b.deploy(b.compose_document(tls=True), mutate=mutate), config).violations == []
    outcome = check(PORTS, b.deploy(b.compose_document(tls=True)), {"proxyService": "nginx"})
    assert outcome.messages == ["Service 'caddy' must publish its ports on 127.0.0.1 only."]


# ---------------------------------------------------------------------------- registration-closed

REGISTRATION = "registration-closed"


@pytest.mark.parametrize("flag", ["ENABLE_USER_REGISTRATION", "ENABLE_ORGANIZATION_CREATION"])
@pytest.mark.parametrize("value", ["True", "true", "1", "", None], ids=["True", "true", "1", "empty", "unset"])
def test_open_registration_is_refused(flag: str, value: str | None) -> None:
    mutate = env_set("glitchtip", **{flag: value}) if value is not None else env_set("glitchtip", **{flag: None})
    outcome = check(REGISTRATION, b.deploy(mutate=mutate))
    assert outcome.messages == [f"Service 'glitchtip' must set {flag} to False."]


def test_every_glitchtip_service_of_a_split_stack_is_checked() -> None:
    document = b.compose_document(server_mode="split")
    outcome = check(REGISTRATION, b.deploy(document, mutate=env_set("web", ENABLE_USER_REGISTRATION="True")))
    assert outcome.messages == ["Service 'web' must set ENABLE_USER_REGISTRATION to False."]


@pytest.mark.parametrize("value", [False, "false", "0", "off", "no"])
def test_false_in_any_spelling_passes(value: Any) -> None:
    assert check(REGISTRATION, b.deploy(mutate=env_set("glitchtip", ENABLE_USER_REGISTRATION=value))).violations == []


def test_a_flag_that_lives_in_the_env_file_is_read_there() -> None:
    mutate = env_set("glitchtip", ENABLE_USER_REGISTRATION="${ENABLE_USER_REGISTRATION:?missing}")
    closed = b.env_text(ENABLE_USER_REGISTRATION="False")
    opened = b.env_text(ENABLE_USER_REGISTRATION="True")
    assert check(REGISTRATION, b.deploy(mutate=mutate, env=closed)).violations == []
    assert check(REGISTRATION, b.deploy(mutate=mutate, env=opened)).messages == ["Service 'glitchtip' must set ENABLE_USER_REGISTRATION to False."]
    assert check(REGISTRATION, b.deploy(mutate=mutate)).messages == ["Service 'glitchtip' must set ENABLE_USER_REGISTRATION to False."]


def test_a_reference_default_applies_when_the_env_file_lacks_the_flag() -> None:
    mutate = env_set("glitchtip", ENABLE_USER_REGISTRATION="${ENABLE_USER_REGISTRATION:-False}")
    assert check(REGISTRATION, b.deploy(mutate=mutate)).violations == []


def test_env_file_entries_are_read_from_the_env_file() -> None:
    def from_env_file(document: dict) -> None:
        document["services"]["glitchtip"]["environment"].pop("ENABLE_ORGANIZATION_CREATION")
        document["services"]["glitchtip"]["env_file"] = [".env"]

    assert check(REGISTRATION, b.deploy(mutate=from_env_file, env=b.env_text(ENABLE_ORGANIZATION_CREATION="False"))).violations == []
    assert check(REGISTRATION, b.deploy(mutate=from_env_file)).messages == ["Service 'glitchtip' must set ENABLE_ORGANIZATION_CREATION to False."]


def test_a_flag_in_an_env_file_not_generated_yet_is_skipped_with_its_reason() -> None:
    mutate = env_set("glitchtip", ENABLE_USER_REGISTRATION="${ENABLE_USER_REGISTRATION}", ENABLE_ORGANIZATION_CREATION="True")
    outcome = check(REGISTRATION, b.deploy(mutate=mutate, stdin=UNKNOWN))
    assert outcome.messages == ["Service 'glitchtip' must set ENABLE_ORGANIZATION_CREATION to False."]  # the known one still counts
    assert outcome.skipped == [
        "glitchtip-deploy: ENABLE_USER_REGISTRATION is read from .env, which is only known once its secrets exist; it is checked at `pulumi up`"
    ]


def test_other_interpolations_are_refused() -> None:
    mutate = env_set("glitchtip", ENABLE_USER_REGISTRATION="${A}${B}")
    assert check(REGISTRATION, b.deploy(mutate=mutate)).messages == ["Service 'glitchtip' must set ENABLE_USER_REGISTRATION to a literal False."]


def test_a_list_shaped_environment_is_read() -> None:
    def as_list(document: dict) -> None:
        env = document["services"]["glitchtip"]["environment"]
        env["ENABLE_USER_REGISTRATION"] = "True"
        document["services"]["glitchtip"]["environment"] = [f"{k}={v}" for k, v in env.items()]

    assert check(REGISTRATION, b.deploy(mutate=as_list)).messages == ["Service 'glitchtip' must set ENABLE_USER_REGISTRATION to False."]
