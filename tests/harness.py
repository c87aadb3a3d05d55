"""Run the Pulumi program under mocks and keep every raw registration.

`run_program(config)` executes __main__.py with runpy (a fresh run each call, never
`import __main__`: pulumi-traps 20) against a recording monitor that keeps the raw
RegisterResourceRequest of each resource: parent, dependencies, deleteBeforeReplace,
additionalSecretOutputs and which inputs were secret (mocks do not apply those flags
themselves: pulumi-traps 16, 21). Config is given with camelCase keys as in the stack
files; keys listed in SECRET_KEYS are passed as secrets, like `--secret` would.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf import json_format
from pulumi.output import Unknown
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.settings import ROOT as ROOT_RESOURCE
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
PROJECT = "glitchtip-migration"
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE = rpc._special_secret_sig
UNKNOWN = rpc.UNKNOWN
SECRET_KEYS = ("sentryDsn", "sshPrivateKey", "glitchtipDsn", "smtpUrl")



def _throwaway_key_pair() -> tuple[str, str]:
    """A fresh ed25519 pair for this test run only (public line, OpenSSH private key)."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return public.decode(), private.decode()


TEST_HOST_KEY, TEST_PRIVATE_KEY = _throwaway_key_pair()
SENTRY_DSN = "https://f0e84f5737f802e81f871ed4cad0abcd@o4510346290069504.ingest.de.sentry.io/4510346297081936"
GLITCHTIP_DSN = "http://0123456789abcdef0123456789abcdef@127.0.0.1:8000/1"


def stack_config(stack: str) -> dict[str, Any]:
    """A committed stack file's config, with the project prefix removed."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    return {k.split(":", 1)[1]: v for k, v in (data.get("config") or {}).items() if k.startswith(f"{PROJECT}:")}


def prod_config(**overrides: Any) -> dict[str, Any]:
    """Pulumi.prod.yaml plus the values an operator sets by hand (secrets, host key)."""
    config = stack_config("prod")
    config.update(sshHostKey=TEST_HOST_KEY, sshPrivateKey=TEST_PRIVATE_KEY, sentryDsn=SENTRY_DSN)
    config.pop("sshPrivateKeyPath", None)
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


@dataclass
class Registration:
    """One RegisterResourceRequest as the engine would receive it."""

    type: str
    name: str
    urn: str
    custom: bool
    inputs: dict[str, Any]
    secret_inputs: set[str]
    unknown_inputs: set[str]
    parent: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    delete_before_replace: bool
    additional_secret_outputs: list[str]
    replace_on_changes: list[str]
    ignore_changes: list[str]
    protect: bool
    retain_on_delete: bool


@dataclass
class Program:
    """What one run of the program registered."""

    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    error: BaseException | None
    logs: list[tuple[str, str]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, found {[r.urn for r in matches]}"
        return matches[0]

    @property
    def commands(self) -> list[Registration]:
        return self.of_type("command:remote:Command")

    def only(self, *names: str) -> Program:
        """The same run limited to the named resources and their descendants."""
        keep = {r.urn for r in self.registrations if r.name in names}
        grew = True
        while grew:
            more = {r.urn for r in self.registrations if r.parent in keep} - keep
            keep |= more
            grew = bool(more)
        return Program([r for r in self.registrations if r.urn in keep], self.outputs, self.secret_outputs, self.error)

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}


def _walk_flags(value: Any) -> tuple[bool, bool]:
    """(contains a secret, contains an unknown) for one serialized property."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return True, _walk_flags(value.get("value"))[1]
        flags = [_walk_flags(v) for v in value.values()]
    elif isinstance(value, list):
        flags = [_walk_flags(v) for v in value]
    else:
        return False, value == UNKNOWN
    return any(f[0] for f in flags), any(f[1] for f in flags)


def unwrap(value: Any) -> Any:
    """The plain value with every secret wrapper removed (which ones were secret is kept apart);
    an unknown (preview) value becomes the engine's UNKNOWN string, so two runs compare equal."""
    if isinstance(value, Unknown):
        return UNKNOWN
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def fake_outputs(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    """Provider-computed outputs that a real provider would return."""
    seed = hashlib.sha256(args.name.encode()).hexdigest()
    if args.typ == "random:index/randomPassword:RandomPassword":
        return {"result": ("p" + seed)[: int(args.inputs.get("length", 32))]}
    if args.typ == "random:index/randomBytes:RandomBytes":
        return {"hex": seed[: 2 * int(args.inputs.get("length", 32))], "base64": "bW9jaw=="}
    if args.typ == "command:remote:Command":
        return {"stdout": "", "stderr": ""}
    return MOCK_OUTPUTS.get(args.typ, lambda _a: {})(args)


# Extra computed outputs per resource type (dynamic providers register theirs here).
MOCK_OUTPUTS: dict[str, Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]] = {}


def _glitchtip_outputs(kind: str) -> Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]:
    """What the GlitchTip dynamic providers compute, made up deterministically per resource name."""

    def outputs(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        seed = hashlib.sha256(args.name.encode()).hexdigest()
        slug = str(args.inputs.get("slug") or args.inputs.get("name") or "ai-admin").lower().replace(" ", "-")
        return {
            "ApiToken": {"token": seed, "tokenId": "1"},
            "Organization": {"slug": slug, "orgId": "1"},
            "Team": {"slug": slug, "teamId": "1"},
            "Project": {"slug": slug, "projectId": "1", "keyId": seed[:8], "publicKey": seed[:32],
                        "dsn": f"http://{seed[:32]}@127.0.0.1:{args.inputs.get('connection', {}).get('remotePort', 8000)}/1"},
            "AlertRule": {"alertId": "1"},
            "UptimeMonitor": {"monitorId": "1", "heartbeatUrl": f"http://127.0.0.1:8000/api/0/organizations/ai-admin/heartbeat_check/{seed[:8]}-{seed[8:12]}-4{seed[13:16]}-8{seed[17:20]}-{seed[20:32]}/"},
        }[kind]

    return outputs


MOCK_TOKEN = hashlib.sha256(b"glitchtip-token").hexdigest()  # the program's ApiToken is named glitchtip-token

for _kind in ("ApiToken", "Organization", "Team", "Project", "AlertRule", "UptimeMonitor"):
    MOCK_OUTPUTS[f"pulumi-python:dynamic/glitchtip:{_kind}"] = _glitchtip_outputs(_kind)

# Answers to invokes (function token -> result), e.g. registry digest lookups.
MOCK_CALLS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}


def fake_registry_image(args: Mapping[str, Any]) -> dict[str, Any]:
    """pulumi-docker's getRegistryImage: a stable fake digest per image name."""
    digest = "sha256:" + hashlib.sha256(str(args["name"]).encode()).hexdigest()
    return {"id": str(args["name"]), "name": args["name"], "sha256Digest": digest}


MOCK_CALLS["docker:index/getRegistryImage:getRegistryImage"] = fake_registry_image


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict]:
        return f"{args.name}-id", {**args.inputs, **fake_outputs(args)}

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, list | None]:
        handler = MOCK_CALLS.get(args.token)
        if handler is None:
            raise AssertionError(f"the program invoked {args.token}, which the test harness does not mock")
        return handler(args.args), []  # an empty failure list: MockMonitor iterates it


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A MockMonitor that keeps each raw registration."""

    def __init__(self) -> None:
        super().__init__(_Mocks())
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 (gRPC name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = json_format.MessageToDict(request.object)
        secret, unknown = set(), set()
        for key, value in raw.items():
            is_secret, is_unknown = _walk_flags(value)
            if is_secret:
                secret.add(key)
            if is_unknown:
                unknown.add(key)
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                custom=request.custom,
                inputs=unwrap(rpc.deserialize_properties(request.object, keep_unknowns=True)),
                secret_inputs=secret,
                unknown_inputs=unknown,
                parent=request.parent,
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                delete_before_replace=request.deleteBeforeReplace,
                additional_secret_outputs=list(request.additionalSecretOutputs),
                replace_on_changes=list(request.replaceOnChanges),
                ignore_changes=list(request.ignoreChanges),
                protect=request.protect,
                retain_on_delete=request.retainOnDelete,
            )
        )
        return response



def _config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_program(
    config: Mapping[str, Any],
    *,
    preview: bool = False,
    stack: str = "prod",
    secret_keys: Iterable[str] = SECRET_KEYS,
) -> Program:
    """Run __main__.py once under mocks with this config (camelCase keys) and record it."""
    monitor = RecordingMonitor()
    ROOT_RESOURCE.set(None)  # a fresh root stack per run, so exports never leak between runs
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    secret_keys = set(secret_keys)
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{k}": _config_value(v) for k, v in config.items()},
        [f"{PROJECT}:{k}" for k in config if k in secret_keys],
    )
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    error: BaseException | None = None
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(MAIN), run_name="__main__")))
    except Exception as exc:  # the program's own error is a result to assert on
        error = exc
    outputs, secret_outputs = {}, set()
    for key, value in get_root_resource().outputs.items():
        output = pulumi.Output.from_input(value)
        outputs[key] = unwrap(_sync_await(output.future(with_unknowns=True)))
        if _sync_await(output.is_secret()):
            secret_outputs.add(key)
    return Program(monitor.registrations, outputs, secret_outputs, error)
