"""Integration fixtures: one throwaway server (tests/integration/testhost.py) per session.

In CI (CI=true) a missing prerequisite FAILS the run; locally it skips with the reason.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.integration import testhost as th  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: needs root and builds a throwaway server (netns + systemd-nspawn)")


def _unavailable(reason: str):
    if th._in_ci():
        pytest.fail(f"integration prerequisites missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def testhost_prerequisites():
    """Install the host packages if missing (root only); fail in CI, skip locally otherwise."""
    if os.geteuid() == 0:
        try:
            th.install_prerequisites()
        except th.TestHostError as exc:
            _unavailable(f"could not install host packages: {exc}")
    problems = th.missing_prerequisites()
    if problems:
        _unavailable("; ".join(problems))


@pytest.fixture(scope="session")
def testhost(testhost_prerequisites):
    """A booted throwaway server: .address, .host_key, .private_key(_path), .images,
    .sentry (.dsn, .received()), .ssh()/.run()/.put_file()/.read_file()/.stat()."""
    host = th.TestHost()
    try:
        host.up()
    except th.TestHostError as exc:
        pytest.fail(f"test host did not come up: {exc}", pytrace=False)
    try:
        yield host
    finally:
        host.down()
    left = [x for x in th.leftovers() if host.name in x]
    if left:
        pytest.fail(f"test host {host.name} left traces: {left}", pytrace=False)
