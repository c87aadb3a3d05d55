"""The README's promises: two set-up commands that CI runs too, and a config table in step with Pulumi.yaml."""

from __future__ import annotations

import re

import yaml

from tests.harness import ROOT

README = (ROOT / "README.md").read_text()


def _table_rows() -> dict[str, str]:
    table = README.split("<!-- config-table")[1].split("<!-- /config-table -->")[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| `(\w+)`(?: \(secret\))? \| (.+?) \| (.+) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_config_table_has_one_row_per_key_with_its_default():
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    rows = _table_rows()
    assert list(rows) == list(declared), "README's config table and Pulumi.yaml's config block differ (keys or order)"
    for key, spec in declared.items():
        if "default" not in spec:
            assert rows[key] == "*(required)*", key
            continue
        default = spec["default"]
        shown = {True: "true", False: "false"}.get(default, default) if isinstance(default, bool) else default
        shown = (", ".join(shown) or "[]") if isinstance(shown, list) else shown
        shown = '""' if shown == "" else shown
        assert rows[key] == f"`{shown}`", f"README shows {rows[key]} as {key}'s default, Pulumi.yaml says {default!r}"


def test_quick_start_is_two_commands_and_ci_runs_the_same():
    quick = README.split("## Quick start")[1].split("##")[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.startswith("    ")]
    assert commands == ["make setup", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake setup\nmake test\n" in ci
