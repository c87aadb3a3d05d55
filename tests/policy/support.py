"""Run the pack's rules the way the Pulumi engine does, without the engine.

- `check(policy, resource)` / `check_stack(policy, resources)`: one rule, a fake
  ReportViolation collecting (message, urn), props wrapped in the SDK's unknown-checking
  proxy as the analyzer does. An UnknownValueError (a rule's explicit "cannot know this
  in preview" or an accidental proxy read) is kept apart in `Outcome.skipped`: the
  engine would turn it into an advisory note, never into a pass or a violation.
- `program_resources(config, mode)`: the program run under the test harness's mocks,
  its Registrations turned into the PolicyResource shapes the engine sends:
  Analyze gets each resource's inputs, AnalyzeStack gets its outputs (inputs plus
  provider-computed values). Modes:
    up             every value known (what `pulumi up` checks);
    preview        an update's preview of an existing stack: computed values known;
    fresh-preview  the first preview: nothing a provider computes exists yet, so the
                   random secrets, command outputs and whatever is made from them are
                   unknown (the engine's sentinels), like a real first `pulumi preview`.
- Numbers go over as floats, as the engine sends them (pulumi-traps 17).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policies import rules
from tests import harness

MODES = ("up", "preview", "fresh-preview")
COMPUTED = {
    "command:remote:Command": ("stdout", "stderr"),
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
    "random:index/randomBytes:RandomBytes": ("hex", "base64"),
}


def policy(name: str) -> ResourceValidationPolicy | StackValidationPolicy:
    matches = [p for p in rules.POLICIES if p.name == name]
    assert len(matches) == 1, f"no single policy named {name}"
    return matches[0]


def engine_value(value: Any) -> Any:
    """A value as the analyzer receives it: unknowns as sentinels, numbers as floats."""
    if isinstance(value, pulumi.output.Unknown):
        return UNKNOWN_STRING_VALUE
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {k: engine_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [engine_value(v) for v in value]
    return value


@dataclass
class Resource:
    """One resource as the engine describes it to a policy pack."""

    type: str
    name: str
    props: dict[str, Any]
    """Inputs (what Analyze sees)."""
    outputs: dict[str, Any] | None = None
    """What AnalyzeStack sees; None means the same as props."""
    urn: str = ""
    dependencies: list[str] = field(default_factory=list)
    parent: str | None = None
    additional_secret_outputs: list[str] = field(default_factory=list)
    custom: bool = True

    def __post_init__(self) -> None:
        if not self.urn:
            self.urn = f"urn:pulumi:prod::glitchtip-migration::{self.type}::{self.name}"

    def options(self) -> PolicyResourceOptions:
        return PolicyResourceOptions(
            protect=False,
            ignore_changes=[],
            delete_before_replace=None,
            aliases=[],
            custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
            additional_secret_outputs=list(self.additional_secret_outputs),
            parent=self.parent,
        )


@dataclass
class Outcome:
    violations: list[tuple[str, str | None]] = field(default_factory=list)
    """(message, urn) in report order."""
    skipped: list[str] = field(default_factory=list)
    """The reasons of an UnknownValueError the rule ended with (empty: it ran to the end)."""

    @property
    def messages(self) -> list[str]:
        return [message for message, _ in self.violations]


class Collector:
    """A fake ReportViolation."""

    def __init__(self, outcome: Outcome, default_urn: str | None = None) -> None:
        self.outcome = outcome
        self.default_urn = default_urn

    def __call__(self, message: str, urn: str | None = None) -> None:
        assert isinstance(message, str) and message, "a violation needs a message"
        self.outcome.violations.append((message, urn or self.default_urn))


def _skip(outcome: Outcome, error: UnknownValueError) -> None:
    outcome.skipped = list(getattr(error, "reasons", None) or [error.message])


def check(rule: ResourceValidationPolicy | str, resource: Resource, config: Mapping[str, Any] | None = None) -> Outcome:
    """Run a resource rule on one resource's inputs, as the engine's Analyze does."""
    rule = policy(rule) if isinstance(rule, str) else rule
    assert isinstance(rule, ResourceValidationPolicy)
    args = ResourceValidationArgs(
        resource.type,
        unknown_checking_proxy(engine_value(resource.props)),
        resource.urn,
        resource.name,
        resource.options(),
        None,
        dict(config) if config else None,
    )
    outcome = Outcome()
    try:
        rule.validate(args, Collector(outcome, resource.urn))
    except UnknownValueError as error:
        _skip(outcome, error)
    return outcome


def check_stack(rule: StackValidationPolicy | str, resources: Iterable[Resource], config: Mapping[str, Any] | None = None) -> Outcome:
    """Run a stack rule on every resource's outputs, as the engine's AnalyzeStack does."""
    rule = policy(rule) if isinstance(rule, str) else rule
    assert isinstance(rule, StackValidationPolicy)
    resources = list(resources)
    built = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(engine_value(r.props if r.outputs is None else r.outputs)),
            r.urn,
            r.name,
            r.options(),
            None,
            None,
            [],
            {},
        )
        for r in resources
    }
    for r in resources:  # parents and dependencies as resource objects, as the analyzer links them
        built[r.urn].parent = built.get(r.parent or "")
        built[r.urn].dependencies = [built[d] for d in r.dependencies if d in built]
    args = StackValidationArgs(list(built.values()), dict(config) if config else None)
    outcome = Outcome()
    try:
        rule.validate(args, Collector(outcome))
    except UnknownValueError as error:
        _skip(outcome, error)
    return outcome


@dataclass
class Finding:
    policy: str
    message: str
    urn: str | None


@dataclass
class PackRun:
    findings: list[Finding]
    """Every violation of every rule."""
    skipped: dict[str, list[str]]
    """Per rule, what it could not check (advisory notes), when anything."""

    def by_policy(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for finding in self.findings:
            result.setdefault(finding.policy, []).append(finding.message)
        return result


def run_pack(resources: Iterable[Resource], config: Mapping[str, Mapping[str, Any]] | None = None) -> PackRun:
    """Every rule of the pack over RESOURCES: resource rules on each one, stack rules once."""
    resources = list(resources)
    config = config or {}
    findings: list[Finding] = []
    skipped: dict[str, list[str]] = {}
    for rule in rules.POLICIES:
        outcomes = (
            [check(rule, r, config.get(rule.name)) for r in resources]
            if isinstance(rule, ResourceValidationPolicy)
            else [check_stack(rule, resources, config.get(rule.name))]
        )
        for outcome in outcomes:
            findings += [Finding(rule.name, m, u) for m, u in outcome.violations]
            if outcome.skipped:
                skipped.setdefault(rule.name, []).extend(outcome.skipped)
    return PackRun(findings, skipped)


@contextlib.contextmanager
def fresh_stack() -> Iterator[None]:
    """Mocks that compute nothing, as on a stack's first preview (invokes still answer)."""
    original = harness._Mocks.new_resource

    def new_resource(self: Any, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict]:
        return f"{args.name}-id", dict(args.inputs)

    harness._Mocks.new_resource = new_resource
    try:
        yield
    finally:
        harness._Mocks.new_resource = original


def _outputs(registration: harness.Registration, mode: str) -> dict[str, Any]:
    outputs = dict(registration.inputs)
    if mode == "fresh-preview":
        for name in COMPUTED.get(registration.type, ()):
            outputs.setdefault(name, UNKNOWN_STRING_VALUE)
        return outputs
    args = pulumi_mocks.MockResourceArgs(
        typ=registration.type,
        name=registration.name,
        inputs=registration.inputs,
        provider="",
        resource_id="",
        custom=registration.custom,
    )
    outputs.update(harness.fake_outputs(args))
    return outputs


def to_resources(program: harness.Program, mode: str) -> list[Resource]:
    """The program's registrations as the engine would show them to the pack in MODE."""
    resources = []
    for r in program.registrations:
        dependencies = list(r.dependencies)
        for deps in r.property_dependencies.values():
            dependencies += [d for d in deps if d not in dependencies]
        resources.append(
            Resource(
                type=r.type,
                name=r.name,
                props=engine_value(dict(r.inputs)),
                outputs=engine_value(_outputs(r, mode)) if r.custom else {},
                urn=r.urn,
                dependencies=dependencies,
                parent=r.parent or None,
                additional_secret_outputs=list(r.additional_secret_outputs),
                custom=r.custom,
            )
        )
    return resources


def program_resources(config: Mapping[str, Any], mode: str, stack: str = "prod") -> list[Resource]:
    """Run the program under mocks in MODE and return its resources for the pack."""
    assert mode in MODES, mode
    if mode == "fresh-preview":
        with fresh_stack():
            program = harness.run_program(config, preview=True, stack=stack)
    else:
        program = harness.run_program(config, preview=(mode == "preview"), stack=stack)
    assert program.error is None, f"the program failed: {program.error}"
    return to_resources(program, mode)
