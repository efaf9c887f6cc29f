"""Top-level conftest: pytester for the pytest_cl plugin tests, and the check that no test leaves a ``cl-*`` file
or folder in the system temporary folder (``tests/tmp_guard.py``; the xdist controller or a plain run checks).
With ``CI`` set (a machine of its own) such an entry fails the session; elsewhere it is a warning, since another
session's entries look the same."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import tmp_guard

pytest_plugins = ["pytester"]

_TMP_BEFORE = pytest.StashKey[set[str]]()


@pytest.fixture(scope="session", autouse=True)
def _cl_client_job_record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``cl-client`` plugin commands run by tests (also in child processes) note their jobs in the session's
    temporary folder, never in the user's ``~/.cache/cl-client/jobs.jsonl``."""
    from cl_client._joblog import RECORD_ENV

    before = os.environ.get(RECORD_ENV)
    os.environ[RECORD_ENV] = str(tmp_path_factory.mktemp("cl-client-record") / "jobs.jsonl")
    yield
    if before is None:
        os.environ.pop(RECORD_ENV, None)
    else:
        os.environ[RECORD_ENV] = before


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the ``cl-*`` entries of the temporary folder (not in xdist workers: the controller checks)."""
    if not hasattr(session.config, "workerinput"):
        session.config.stash[_TMP_BEFORE] = tmp_guard.snapshot()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when it left ``cl-*`` entries in the temporary folder."""
    before = session.config.stash.get(_TMP_BEFORE, None)
    if before is None or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    left = tmp_guard.leftovers(before)
    if not left:
        return
    strict = bool(os.environ.get("CI"))  # on a shared machine, another session's entries cannot be told apart
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"the tests left {len(left)} entr{'y' if len(left) == 1 else 'ies'} in the temporary folder: {left}"
    if reporter is not None:
        if strict:
            reporter.write_line(f"ERROR: {message}", red=True)
        else:
            reporter.write_line(f"warning: {message} (or another session did; with CI set this fails)", yellow=True)
    if strict:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
