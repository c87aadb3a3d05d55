"""The real pack, end to end: policies/__main__.py started as Pulumi starts it, spoken to over
the analyzer gRPC protocol the engine uses (GetAnalyzerInfo, Configure, Analyze, AnalyzeStack),
with secrets wrapped and unknowns as the engine's sentinels. Nothing imports __main__.py: it
runs in a child process (its PolicyPack never returns, pulumi-traps 22), ended by its pid.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from components.remote import render_script
from policies import rules
from tests import harness
from tests.policy import builders as b
from tests.policy.support import Resource, engine_value, program_resources

ROOT = Path(__file__).resolve().parents[2]
SIG, SECRET = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
SECRET_INPUTS = {"connection", "stdin"}
PACK_PYTHON = os.environ.get("POLICY_PACK_PYTHON") or sys.executable
"""The pack's interpreter: set POLICY_PACK_PYTHON=policies/venv/bin/python to run it in its own environment."""


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    process = subprocess.Popen(
        [PACK_PYTHON, "-u", str(ROOT / "policies" / "__main__.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT / "policies",
        env={k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")},
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "the pack did not print its port within 30 s"
        port = int(process.stdout.readline().decode().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def struct(props: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    wrapped = {k: ({SIG: SECRET, "value": v} if k in SECRET_INPUTS else v) for k, v in engine_value(props).items()}
    value.update(wrapped)
    return value


def analyzer_resource(r: Resource) -> analyzer_pb2.AnalyzerResource:
    return analyzer_pb2.AnalyzerResource(
        type=r.type,
        properties=struct(r.outputs if r.outputs is not None else r.props),
        urn=r.urn,
        name=r.name,
        options=analyzer_pb2.AnalyzerResourceOptions(additionalSecretOutputs=r.additional_secret_outputs, parent=r.parent or ""),
        parent=r.parent or "",
        dependencies=r.dependencies,
    )


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, r: Resource) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeRequest(
        type=r.type,
        properties=struct(r.props),
        urn=r.urn,
        name=r.name,
        options=analyzer_pb2.AnalyzerResourceOptions(additionalSecretOutputs=r.additional_secret_outputs),
    )
    return list(stub.Analyze(request).diagnostics)


def analyze_stack(stub: analyzer_pb2_grpc.AnalyzerStub, resources: list[Resource]) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeStackRequest(resources=[analyzer_resource(r) for r in resources])
    return list(stub.AnalyzeStack(request).diagnostics)


def test_the_pack_serves_every_rule(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == rules.PACK_NAME
    served = {p.name: p for p in info.policies}
    assert list(served) == [p.name for p in rules.POLICIES]
    assert served["remote-host-verified"].enforcementLevel == analyzer_pb2.MANDATORY
    assert served["docker-pinned"].enforcementLevel == analyzer_pb2.ADVISORY
    assert served["memory-within-budget"].configSchema.properties["memoryBudgetMb"]["default"] == 1024


def test_a_bad_deploy_is_refused_over_the_wire_without_echoing_secrets(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    def break_it(document: dict) -> None:
        document["services"]["glitchtip"]["ports"] = ["8000:8000"]

    diagnostics = analyze(analyzer, b.deploy(mutate=break_it))
    assert [(d.policyName, d.message, d.enforcementLevel) for d in diagnostics] == [
        (
            "loopback-only-ports",
            "Checks whether nothing is published beyond 127.0.0.1 except the TLS proxy's 80 and 443 with exposure tls.\n"
            "Service 'glitchtip' must publish its ports on 127.0.0.1 only.",
            analyzer_pb2.MANDATORY,
        )
    ]


def test_the_program_s_first_preview_passes_over_the_wire(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    resources = program_resources(harness.prod_config(), "fresh-preview")
    diagnostics = [d for r in resources for d in analyze(analyzer, r)] + analyze_stack(analyzer, resources)
    assert [(d.policyName, d.message) for d in diagnostics] == []


def test_a_skip_arrives_as_an_advisory_note_and_known_violations_stay_mandatory(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    unknown = b.command("app-dsn-set", "set-dsn.sh", create=b.UNKNOWN, stdin="DSN=x\n")
    leaky = b.docker()
    leaky.props["delete"] = render_script("uninstall-docker.sh", [b.ADMIN_PASSWORD])
    diagnostics = [d for d in analyze_stack(analyzer, [unknown, leaky, b.random_password("admin", b.ADMIN_PASSWORD)]) if d.policyName == "no-secrets-in-commands"]
    assert [(d.enforcementLevel, d.urn) for d in diagnostics] == [(analyzer_pb2.MANDATORY, leaky.urn), (analyzer_pb2.ADVISORY, "")]
    assert diagnostics[0].message.endswith("The delete command must not contain a generated secret: pass secrets on stdin.")
    assert "app-dsn-set.create is only known once the resources it reads exist" in diagnostics[1].message
    assert all(b.ADMIN_PASSWORD not in d.message for d in diagnostics)


def test_pack_config_reaches_the_rules(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    config = struct_pb2.Struct()
    config.update({"memoryBudgetMb": 512})
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
        "memory-within-budget": analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.MANDATORY, properties=config)
    }))
    try:
        diagnostics = analyze(analyzer, b.deploy(b.compose_document(declare_budget=False)))
        assert [d.message.splitlines()[-1] for d in diagnostics] == [
            "The services' memory limits must add up to no more than the memory budget (memoryBudgetMb)."
        ]
    finally:
        analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={}))
