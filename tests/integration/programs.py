"""The program under mocks, aimed at the throwaway test server.

Every integration module runs the real program (tests/harness.py) with the server's address,
its pinned host key, the test client key and the stand-in images, then keeps the resources
it exercises; tests/integration/engine.py (or the module itself) applies their commands.
"""

from __future__ import annotations

from tests.harness import Program, prod_config, run_program

ADMIN = "admin@example.com"


def server_program(testhost, *names: str, **config) -> Program:
    """The program for TESTHOST with CONFIG over the defaults, limited to the resources NAMES
    and their children (all of them when no name is given). Fails on a config error."""
    values = dict(
        host=testhost.address,
        sshHostKey=testhost.host_key,
        sshPrivateKey=testhost.private_key,
        glitchtipImage=testhost.images["glitchtip"],
        postgresImage=testhost.images["postgres"],
        adminEmail=ADMIN,
    )
    program = run_program(prod_config(**{**values, **config}))
    assert program.error is None, program.error
    return program.only(*names) if names else program
