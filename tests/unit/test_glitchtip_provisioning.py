"""GlitchTipProject under Pulumi mocks: children, parents, names, secrets, outputs."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.glitchtip.resources import AlertRecipient, ApiAccess


class Recorder(pulumi.runtime.Mocks):
    """Keeps every registration; fakes provider outputs for the dynamic resources."""

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources[args.name] = args
        outs = dict(args.inputs)
        if args.typ.endswith(":ApiToken"):
            outs["token"] = "t" * 64
        if args.typ.endswith(":Organization"):
            outs["slug"] = "acme"
        if args.typ.endswith(":Project"):
            outs.update(projectId="7", slug="web-app", dsn="http://k@127.0.0.1:8000/7", publicDsn=None)
        if args.typ.endswith(":UptimeMonitor") and args.inputs.get("monitorType") == "Heartbeat":
            outs["heartbeatUrl"] = "http://127.0.0.1:8000/api/0/organizations/acme/heartbeat_check/abc/"
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


@pytest.fixture()
def recorder() -> Recorder:
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="glitchtip-migration", stack="test", preview=False)
    return mocks


def _args(**overrides: Any):  # type: ignore[no-untyped-def]
    from components.glitchtip.provisioning import AlertSpec, GlitchTipProjectArgs, MonitorSpec

    values: dict[str, Any] = dict(
        access=ApiAccess(ssh_host="203.0.113.5", ssh_host_key="ssh-ed25519 AAAA", ssh_private_key=pulumi.Output.secret("KEY")),
        admin_email="admin@example.com",
        admin_password=pulumi.Output.secret("pw"),
        org_name="Acme",
        team_slug="backend",
        project_name="web-app",
        alerts=(AlertSpec("new issue"), AlertSpec("burst", quantity=20, timespan_minutes=5,
                                                   recipients=(AlertRecipient("webhook", "https://hooks.example.com/x"),))),
        monitors=(MonitorSpec("app health", "http://127.0.0.1:3000/health"),),
    )
    values.update(overrides)
    return GlitchTipProjectArgs(**values)


def test_component_children_and_outputs(recorder: Recorder) -> None:
    from components.glitchtip.provisioning import GlitchTipProject

    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def build():  # type: ignore[no-untyped-def]
        component = GlitchTipProject("gt", _args())
        return pulumi.Output.all(component.dsn, component.project_id, component.heartbeat_url).apply(
            lambda values: seen.update(dsn=values[0], project_id=values[1], heartbeat=values[2])
        )

    build()  # returns once every registration has finished
    assert seen["dsn"] == "http://k@127.0.0.1:8000/7" and seen["project_id"] == "7"
    assert seen["heartbeat"].endswith("/heartbeat_check/abc/")
    assert set(recorder.resources) == {"gt", "gt-token", "gt-org", "gt-team", "gt-project", "gt-alert-new-issue",
                                       "gt-alert-burst", "gt-monitor-app-health", "gt-heartbeat"}
    assert recorder.resources["gt"].typ == "glitchtip:index:GlitchTipProject"
    alert = recorder.resources["gt-alert-burst"].inputs
    assert alert["quantity"] == 20 and alert["recipients"] == [{"type": "webhook", "url": "https://hooks.example.com/x"}]
    assert recorder.resources["gt-alert-new-issue"].inputs["quantity"] == 1
    assert recorder.resources["gt-heartbeat"].inputs["monitorType"] == "Heartbeat"
    assert recorder.resources["gt-team"].inputs["organization"] == "acme"  # wired from the org's output


@pulumi.runtime.test
def test_dsn_and_heartbeat_outputs_are_secret(recorder: Recorder):  # type: ignore[no-untyped-def]
    from components.glitchtip.provisioning import GlitchTipProject

    component = GlitchTipProject("gt", _args())

    async def secrets() -> None:
        assert await component.dsn.is_secret()
        assert await component.heartbeat_url.is_secret()

    return pulumi.Output.from_input(secrets())


def test_args_validation() -> None:
    from components.glitchtip.provisioning import AlertSpec

    with pytest.raises(ValueError, match="team_slug"):
        _args(team_slug="no spaces allowed")
    with pytest.raises(ValueError, match="share the name"):
        _args(alerts=(AlertSpec("New issue"), AlertSpec("new-issue")))
    with pytest.raises(ValueError, match="needs a url"):
        AlertRecipient("webhook")
    with pytest.raises(ValueError, match="ApiAccess needs"):
        ApiAccess(ssh_host="h")
