"""A stand-in for the Pulumi engine + pulumi-command, for the integration tests only.

It takes the `command:remote:Command` resources a mocked program run registered
(tests/harness.py) and does with them what `pulumi up` / `pulumi destroy` would do with
pulumi-command 1.x over SSH:

- up: in dependency order, `create` for a resource not in state; `update` for one whose
  inputs changed (any input: create, update, delete, stdin, connection — pulumi-traps 2);
  nothing for an unchanged one; then `delete` for resources that left the program, each
  before anything it depends on (else newest first). The command runs as one SSH exec of the command string, with
  `stdin` written to the session and then closed, and no environment (the program never
  uses `environment=`); a non-zero exit fails the step and stops the run, like the engine.
- destroy: every `delete` stored in state, dependents before their dependencies (else
  newest first), with the connection stored in state (pulumi-traps 6): the program is
  not consulted.

What it does not emulate: outputs flowing from one command's stdout into another's
inputs (under mocks stdout is ""), dynamic providers (GlitchTip objects), replace
semantics (the program uses no triggers/replaceOnChanges), parallelism, previews.
The server is verified against the registered hostKey, as the provider does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import paramiko

from components.glitchtip.tunnel import SshTarget, connect
from tests.harness import Program, Registration

COMMAND = "command:remote:Command"
STEP_TIMEOUT = 900.0


class StepFailed(AssertionError):
    """A command exited non-zero: what the engine would report as a failed update."""

    def __init__(self, urn: str, operation: str, result: StepResult) -> None:
        self.result = result
        super().__init__(f"{operation} of {urn} exited {result.exit_code}: {result.stderr.strip()[-2000:]}")


@dataclass
class StepResult:
    urn: str
    operation: str  # create | update | delete
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Engine:
    """State (URN -> last applied inputs) and the log of what ran."""

    state: dict[str, Registration] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # creation order, for deletes
    log: list[StepResult] = field(default_factory=list)

    def up(self, program: Program) -> list[StepResult]:
        """Apply a program run; return the steps that ran (empty when nothing changed)."""
        ran: list[StepResult] = []
        wanted = {r.urn: r for r in program.registrations if r.type == COMMAND}
        for reg in _dependency_order(program):
            previous = self.state.get(reg.urn)
            if previous is None:
                ran.append(self._run(reg, "create", reg.inputs.get("create")))
                self.order.append(reg.urn)
            elif previous.inputs != reg.inputs:
                ran.append(self._run(reg, "update", reg.inputs.get("update") or reg.inputs.get("create")))
            self.state[reg.urn] = reg
        for urn in self._delete_order([u for u in self.order if u not in wanted]):
            ran.append(self._run(self.state[urn], "delete", self.state[urn].inputs.get("delete")))
            self._forget(urn)
        return ran

    def reapply(self) -> list[StepResult]:
        """Run every resource's update again, as a changed connection or script would: proves idempotency."""
        return [self._run(self.state[urn], "update", self.state[urn].inputs.get("update")) for urn in self.order]

    def destroy(self) -> list[StepResult]:
        """Run every stored delete, dependents before what they depend on (else newest first)."""
        ran = []
        for urn in self._delete_order(list(self.order)):
            ran.append(self._run(self.state[urn], "delete", self.state[urn].inputs.get("delete")))
            self._forget(urn)
        return ran

    def _delete_order(self, urns: list[str]) -> list[str]:
        """URNS ordered as the engine deletes them: a resource goes before every resource it
        depends on (as recorded in state), otherwise the newest first."""
        left, ordered = list(reversed(urns)), []
        while left:
            needed = {d for u in left for d in _depends_on(self.state[u]) if d != u}
            urn = next((u for u in left if u not in needed), left[0])
            ordered.append(urn)
            left.remove(urn)
        return ordered

    def _forget(self, urn: str) -> None:
        self.order.remove(urn)
        del self.state[urn]

    def _run(self, reg: Registration, operation: str, command: str | None) -> StepResult:
        if not command:  # a delete the program did not set: the engine just drops it from state
            result = StepResult(reg.urn, operation, 0, "", "")
        else:
            stdin = reg.inputs.get("stdin") if operation != "delete" else None
            result = run_over_ssh(reg.inputs["connection"], command, stdin, reg.urn, operation)
        self.log.append(result)
        if result.exit_code != 0:
            raise StepFailed(reg.urn, operation, result)
        return result


def run_over_ssh(connection: dict, command: str, stdin: str | None, urn: str, operation: str) -> StepResult:
    """One SSH exec as pulumi-command does it: verified host key, the private key, stdin then EOF."""
    target = SshTarget(
        host=connection["host"],
        host_key=connection["hostKey"],
        private_key=connection["privateKey"],
        user=connection["user"],
        port=int(connection.get("port", 22)),
    )
    client = connect(target, timeout=float(connection.get("perDialTimeout", 15)))
    try:
        channel = client.get_transport().open_session()
        channel.settimeout(STEP_TIMEOUT)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin.encode())
        channel.shutdown_write()
        stdout, stderr = _drain(channel)
        return StepResult(urn, operation, channel.recv_exit_status(), stdout, stderr)
    finally:
        client.close()


def _drain(channel: paramiko.Channel) -> tuple[str, str]:
    out, err = bytearray(), bytearray()
    while True:
        if channel.recv_ready():
            out += channel.recv(65536)
        elif channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        elif channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        else:
            channel.status_event.wait(0.05)
    return out.decode(errors="replace"), err.decode(errors="replace")


def _depends_on(reg: Registration) -> set[str]:
    deps = set(reg.dependencies)
    for prop_deps in reg.property_dependencies.values():
        deps |= set(prop_deps)
    return deps


def _dependency_order(program: Program) -> list[Registration]:
    """Commands sorted so each comes after the commands it depends on (registration order otherwise)."""
    commands = [r for r in program.registrations if r.type == COMMAND]
    urns = {r.urn for r in commands}
    placed: list[Registration] = []
    done: set[str] = set()
    pending = list(commands)
    while pending:
        for reg in pending:
            if _depends_on(reg) & urns <= done:
                placed.append(reg)
                done.add(reg.urn)
                pending.remove(reg)
                break
        else:
            raise AssertionError(f"dependency cycle among {[r.urn for r in pending]}")
    return placed
