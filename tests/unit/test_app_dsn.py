"""AppDsn under mocks: the cutover is one resource's update, the target in clear text, the DSNs secret."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from components.app_dsn import AppDsnArgs, parse_results, render_stdin
from components.remote import Step, parse_command
from components.settings import ConfigError
from tests import harness
from tests.harness import GLITCHTIP_DSN, SENTRY_DSN, Program, Registration, prod_config, run_program

ENV_FILE = "/opt/ai-admin/.env"
PROD_APPS = "ai-admin-api,ai-admin-worker-v2,ai-admin-batch-processor,ai-admin-telegram-bot,baileys-whatsapp-service"
TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"


def program_for(target: str, preview: bool = False, **overrides) -> Program:
    result = run_program(prod_config(glitchtipDsn=GLITCHTIP_DSN, dsnTarget=target, **overrides), preview=preview)
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="module", params=[False, True], ids=["up", "preview"])
def runs(request) -> dict[str, Program]:
    return {target: program_for(target, request.param) for target in ("sentry", "glitchtip")}


def step_of(program: Program) -> Registration:
    return program.named("app-dsn-set")


def test_flipping_dsn_target_changes_exactly_one_resource(runs):
    before, after = runs["sentry"].by_urn(), runs["glitchtip"].by_urn()
    assert before.keys() == after.keys(), "the flip adds or removes resources"
    changed = {urn: sorted(k for k in before[urn].inputs.keys() | after[urn].inputs.keys()
                           if before[urn].inputs.get(k) != after[urn].inputs.get(k))
               for urn in before if before[urn].inputs != after[urn].inputs}
    step = step_of(runs["glitchtip"])
    # In a first preview the project's DSN does not exist yet: stdin is unknown on both sides.
    expected = ["create", "update"] if "stdin" in step.unknown_inputs else ["create", "stdin", "update"]
    assert changed == {step.urn: expected}, changed
    for urn in before:  # nor is anything else about the graph different
        assert sorted(before[urn].dependencies) == sorted(after[urn].dependencies), urn
        assert before[urn].parent == after[urn].parent, urn


def test_the_target_is_in_clear_text_in_the_command(runs):
    for target, program in runs.items():
        step = step_of(program)
        header = step.inputs["create"].splitlines()[0]
        assert header.startswith(f"# glitchtip-migration: set-dsn.sh {ENV_FILE} {target} http://127.0.0.1:8000"), header
        script, args = parse_command(step.inputs["create"])
        assert (script, args) == ("set-dsn.sh", [ENV_FILE, target, "http://127.0.0.1:8000", PROD_APPS, ""])
        assert "create" not in step.unknown_inputs, "the target must be readable in every preview"
    diff = [(a, b) for a, b in zip(step_of(runs["sentry"]).inputs["create"].splitlines(),
                                     step_of(runs["glitchtip"]).inputs["create"].splitlines()) if a != b]
    assert len(diff) == 2 and all("sentry" in a and "glitchtip" in b for a, b in diff), "the diff is more than sentry -> glitchtip"


def test_no_dsn_or_key_in_any_command_string(runs):
    needles = [SENTRY_DSN, GLITCHTIP_DSN, urlsplit(SENTRY_DSN).username, urlsplit(GLITCHTIP_DSN).username]
    for program in runs.values():
        for reg in program.commands:
            for field in ("create", "update", "delete"):
                for needle in needles:
                    assert needle not in (reg.inputs.get(field) or ""), f"{reg.urn} puts a DSN on the command line ({field})"


def test_the_dsns_travel_on_secret_stdin(runs):
    for target, dsn in (("sentry", SENTRY_DSN), ("glitchtip", GLITCHTIP_DSN)):
        step = step_of(runs[target])
        assert "stdin" in step.secret_inputs, "the DSNs are stored in plain text"
        if "stdin" in step.unknown_inputs:  # preview: not known yet, but already secret
            continue
        lines = step.inputs["stdin"].splitlines()
        assert lines[:2] == [f"DSN={dsn}", f"SENTRY_DSN={SENTRY_DSN}"]
        # the cutover's gate gets the provisioned API token; a rollback needs none
        assert lines[2:] == ([f"API_TOKEN={harness.MOCK_TOKEN}"] if target == "glitchtip" else [])
        assert step.inputs["logging"] == "none"
        assert {"stdout", "stderr"} <= set(step.additional_secret_outputs)
        assert step.inputs["addPreviousOutputInEnv"] is False and not step.inputs.get("environment")
        assert not step.inputs.get("triggers"), "triggers would replace: create-before-delete runs the restore last"
        assert step.inputs["update"] == step.inputs["create"]


def test_destroy_restores_whatever_the_target(runs):
    deletes = {step_of(p).inputs["delete"] for p in runs.values()}
    assert deletes == {Step("restore-dsn.sh", (ENV_FILE, PROD_APPS, "")).render()}


def test_it_depends_on_the_stack_and_sits_under_its_component(runs):
    program = runs["glitchtip"]
    step, component = step_of(program), program.named("app-dsn")
    assert component.type == "glitchtip:index:AppDsn" and step.parent == component.urn
    assert program.named("glitchtip-deploy").urn in step.dependencies, "destroy could take the stack down before the DSN is back"


def test_without_an_override_the_dsn_comes_from_the_provisioned_project(monkeypatch):
    monkeypatch.setitem(harness.MOCK_OUTPUTS, "pulumi-python:dynamic/glitchtip:Project", lambda args: {
        "dsn": "http://feedfacefeedfacefeedfacefeedface@127.0.0.1:8000/7", "projectId": "7", "slug": "ai-admin"})
    monkeypatch.setitem(harness.MOCK_OUTPUTS, "pulumi-python:dynamic/glitchtip:ApiToken", lambda args: {"token": TOKEN})
    result = run_program(prod_config(dsnTarget="glitchtip"))
    assert result.error is None, result.error
    step, project = step_of(result), result.named("glitchtip-project")
    assert "DSN=http://feedfacefeedfacefeedfacefeedface@127.0.0.1:8000/7" in step.inputs["stdin"].splitlines()
    assert f"API_TOKEN={TOKEN}" in step.inputs["stdin"].splitlines()
    assert "stdin" in step.secret_inputs, "the project's DSN reaches AppDsn in plain text"
    assert project.urn in step.property_dependencies.get("stdin", []) or project.urn in step.dependencies
    assert "feedface" not in step.inputs["create"]
    assert "glitchtipDsn" in result.secret_outputs


def test_app_names_and_restart_command_reach_the_scripts():
    program = program_for("sentry", appPm2Apps=["api"], appRestartCommand="systemctl restart ai-admin")
    step = step_of(program)
    assert parse_command(step.inputs["create"])[1][3:] == ["api", "systemctl restart ai-admin"]
    assert parse_command(step.inputs["delete"])[1] == [ENV_FILE, "api", "systemctl restart ai-admin"]


def test_a_token_and_depends_on_in_opts_reach_the_step(tmp_path: Path, monkeypatch):
    """Built directly, as the provisioning will wire it: the token joins the DSN on stdin; opts.depends_on is honoured."""
    main = tmp_path / "__main__.py"
    main.write_text(textwrap.dedent(f"""
        import pulumi
        from pulumi_command import remote
        from components.app_dsn import AppDsn, AppDsnArgs
        connection = remote.ConnectionArgs(host="203.0.113.10", user="root", host_key="k", private_key=pulumi.Output.secret("p"))
        first = remote.Command("first", connection=connection, create="true")
        second = remote.Command("second", connection=connection, create="true")
        AppDsn("app-dsn", AppDsnArgs(
            connection=connection, env_file="{ENV_FILE}", target="glitchtip",
            sentry_dsn=pulumi.Output.secret("{SENTRY_DSN}"), glitchtip_dsn=pulumi.Output.secret("{GLITCHTIP_DSN}"),
            glitchtip_url="http://127.0.0.1:8000", api_token=pulumi.Output.secret("{TOKEN}"), depends_on=[first],
        ), opts=pulumi.ResourceOptions(depends_on=second))
    """))
    monkeypatch.setattr(harness, "MAIN", main)
    program = run_program(prod_config())
    assert program.error is None, program.error
    step = step_of(program)
    assert step.inputs["stdin"] == f"DSN={GLITCHTIP_DSN}\nSENTRY_DSN={SENTRY_DSN}\nAPI_TOKEN={TOKEN}\n"
    assert "stdin" in step.secret_inputs
    assert TOKEN not in step.inputs["create"] + step.inputs["delete"]
    assert {program.named("first").urn, program.named("second").urn} <= set(step.dependencies)


def test_a_glitchtip_target_without_any_dsn_is_one_clear_config_error():
    with pytest.raises(ConfigError, match=r"^Config key 'glitchtipDsn' is required while dsnTarget is glitchtip"):
        AppDsnArgs(connection=None, env_file=ENV_FILE, target="glitchtip", sentry_dsn=SENTRY_DSN, glitchtip_dsn=None,
                   glitchtip_url="http://127.0.0.1:8000")


def test_render_stdin_refuses_a_value_that_would_inject_a_line():
    assert render_stdin(GLITCHTIP_DSN, SENTRY_DSN) == f"DSN={GLITCHTIP_DSN}\nSENTRY_DSN={SENTRY_DSN}\n"
    with pytest.raises(ValueError, match="DSN for set-dsn.sh must be one line"):
        render_stdin(GLITCHTIP_DSN + "\nAPI_TOKEN=x", SENTRY_DSN)
    with pytest.raises(ValueError, match="needs the target DSN"):
        render_stdin("", SENTRY_DSN)  # e.g. a provisioned project without a key: never a stdin without DSN=


def test_parse_results_reads_the_scripts_summary_line():
    out = "gate=passed event=0123abcd visible=yes\ntarget=glitchtip changed=yes restarted=ai-admin-api,ai-admin-worker-v2\n"
    assert parse_results(out) == {"gate": "passed", "event": "0123abcd", "visible": "yes", "target": "glitchtip",
                                  "changed": "yes", "restarted": "ai-admin-api,ai-admin-worker-v2"}
