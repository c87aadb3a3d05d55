"""The pack's shape: names, descriptions, message style, what imports what, its files."""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from pathlib import Path

import yaml
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from policies import rules

ROOT = Path(__file__).resolve().parents[2]
POLICIES_DIR = ROOT / "policies"
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# What a message or a skip reason may interpolate: names of properties, rules, config
# thresholds, design service names and resource names; never a property's value.
ALLOWED_INTERPOLATIONS = {
    "prop", "source", "kind", "what", "label", "service_label(name)", "flag", "min_days", "hour", "args.name", "resource.label",
}


def test_policies_are_named_in_kebab_case_and_described_as_checks() -> None:
    names = [p.name for p in rules.POLICIES]
    assert len(names) == len(set(names))
    for policy in rules.POLICIES:
        assert KEBAB.match(policy.name), policy.name
        assert policy.description.startswith("Checks whether ") and policy.description.endswith("."), policy.name
        assert isinstance(policy, (ResourceValidationPolicy, StackValidationPolicy))
    assert KEBAB.match(rules.PACK_NAME)


def test_every_mandatory_rule_of_the_brief_is_there() -> None:
    assert {p.name for p in rules.POLICIES} == {
        "remote-host-verified",
        "no-secrets-in-commands",
        "secret-steps-log-nothing",
        "images-pinned-by-digest",
        "memory-within-budget",
        "loopback-only-ports",
        "registration-closed",
        "backup-configured",
        "app-dsn-gated",
        "docker-pinned",
    }
    levels = {p.name: p.enforcement_level for p in rules.POLICIES}
    assert levels.pop("docker-pinned") == EnforcementLevel.ADVISORY
    assert set(levels.values()) == {None}  # the pack's MANDATORY applies


def test_thresholds_are_in_the_config_schema_with_the_defaults_the_code_uses() -> None:
    schema = {p.name: (p.config_schema.properties if p.config_schema else {}) for p in rules.POLICIES}
    assert schema["memory-within-budget"]["memoryBudgetMb"]["default"] == 1024 == rules.DEFAULTS["memoryBudgetMb"]
    assert schema["backup-configured"]["minRetentionDays"]["default"] == 7 == rules.DEFAULTS["minRetentionDays"]
    assert schema["backup-configured"]["maintenanceHour"]["default"] == 5 == rules.DEFAULTS["maintenanceHour"]
    assert schema["loopback-only-ports"]["proxyPorts"]["default"] == [80, 443]
    for properties in schema.values():
        for key, spec in properties.items():
            assert spec["default"] == rules.DEFAULTS[key] and spec.get("description"), key


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == name) or (isinstance(func, ast.Attribute) and func.attr == name):
                found.append(node)
    return found


def _template(node: ast.expr) -> str:
    """The message with each interpolation shown as {name}; fails on an interpolation not allowed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    assert isinstance(node, ast.JoinedStr), ast.unparse(node)
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(value.value)
            continue
        expression = ast.unparse(value.value)
        if expression.startswith("' and '.join(sorted(proxy_ports"):  # the pack config's ports
            expression = "proxy_ports"
        else:
            assert expression in ALLOWED_INTERPOLATIONS, f"a message interpolates {expression}"
        parts.append("{" + expression + "}")
    return "".join(parts)


def test_violation_messages_say_what_must_be_and_never_interpolate_a_value() -> None:
    tree = ast.parse((POLICIES_DIR / "rules.py").read_text())
    messages = [_template(call.args[0]) for call in _calls(tree, "report")]
    assert len(messages) > 40
    for message in messages:
        assert re.match(r"^[A-Z{].* must .*\.$", message, re.DOTALL), message


def test_skip_reasons_name_resources_and_properties_only() -> None:
    tree = ast.parse((POLICIES_DIR / "rules.py").read_text())
    reasons = [_template(call.args[0]) for call in _calls(tree, "add") if call.args and isinstance(call.args[0], ast.JoinedStr)]
    assert reasons and all("checked at `pulumi up`" in reason for reason in reasons)


def test_the_pack_imports_nothing_of_the_program() -> None:
    for path in POLICIES_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level > 0 or node.module.split(".")[0] in {"__future__", "pulumi_policy", "yaml", "rules", "commandline"} or node.module.split(".")[0] in _stdlib(), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in _stdlib() | {"yaml"}, f"{path.name} imports {alias.name}"


def _stdlib() -> set[str]:
    import sys

    return set(sys.stdlib_module_names)


def test_main_only_builds_the_pack_from_the_rules() -> None:
    tree = ast.parse((POLICIES_DIR / "__main__.py").read_text())
    imports = {(node.module, alias.name) for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert ("rules", "POLICIES") in imports and ("pulumi_policy", "PolicyPack") in imports
    (call,) = _calls(tree, "PolicyPack")
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert keywords == {"name": "PACK_NAME", "policies": "POLICIES", "enforcement_level": "EnforcementLevel.MANDATORY"}
    assert isinstance(tree.body[-1], ast.Expr) and tree.body[-1].value is call  # the last thing it does
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]  # rules live in rules.py


PARSE_ALL = """
import ast, pickle, sys
from pathlib import Path
root = Path(sys.argv[1])
trees = [(str(p), ast.parse(p.read_text(errors="replace"))) for p in root.rglob("*.py")
         if not {".venv", "venv", ".git"} & set(p.parts)]
sys.stdout.buffer.write(pickle.dumps(trees))
"""


def _parsed_sources() -> list[tuple[str, ast.Module]]:
    """Every .py file of the project, parsed by a fresh interpreter: in CPython 3.11.7 one
    ast.parse that goes wrong (seen after the stack and relay tests ran in the same process)
    leaves the ast module's recursion counter off, and every later ast.parse of a deep enough
    file raises "SystemError: AST constructor recursion depth mismatch"."""
    done = subprocess.run([sys.executable, "-c", PARSE_ALL, str(ROOT)], capture_output=True, check=True, timeout=120)
    return pickle.loads(done.stdout)


def test_nothing_imports_the_pack_entry_point() -> None:
    """Constructing the PolicyPack never returns (pulumi-traps 22): only Pulumi runs __main__.py."""
    for path, tree in _parsed_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("policies.__main__") for a in node.names), path
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("policies.__main__"), path
                assert not (node.module == "policies" and any(a.name == "__main__" for a in node.names)), path
            elif isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("run_path", "run_module", "import_module"):
                assert "policies" not in ast.unparse(node), f"{path} runs the pack's entry point"


def test_pack_files() -> None:
    manifest = yaml.safe_load((POLICIES_DIR / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python" and manifest["runtime"]["options"]["virtualenv"] == "venv"
    assert manifest["description"] and manifest["version"]
    requirements = (POLICIES_DIR / "requirements.txt").read_text().split()
    project = (ROOT / "requirements.txt").read_text() + (ROOT / "requirements-dev.txt").read_text()
    for pin in ("pulumi-policy==1.21.0", "PyYAML=="):
        assert any(r.startswith(pin) for r in requirements), pin
    for requirement in requirements:
        if "==" in requirement:
            assert requirement in project, f"{requirement}: the pack's pin differs from the project's (tests run the project's)"


def test_the_ci_workflow_previews_pull_requests_with_the_pack() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "preview.yml").read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    (job,) = workflow["jobs"].values()
    assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert job["env"]["PULUMI_BACKEND_URL"].endswith("'file://~' }}")
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert "pulumi preview --stack \"$STACK\" --policy-pack policies" in script
    assert "pip install -q -r policies/requirements.txt" in script
