"""The certify live view in this process (the subprocess tests in tests/unit/client/cli/test_certify_live.py
drive it through ``cl-client certify``; here its plain mode runs inside pytester, so its lines can be read back
from the terminal descriptor it writes to)."""

from __future__ import annotations

import pytest

from tests.unit.pytest_cl.conftest import Target, run

CHECKS = """
def test_a(cl_deployment):
    assert cl_deployment.server_url


def test_b(cl_deployment):
    assert False, "planted failure"


def test_c():
    pass
"""


def test_the_plain_live_view_counts_checks_and_failures(
    pytester: pytest.Pytester, cl_target: Target, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CL_CERTIFY_LIVE", "plain")
    pytester.makepyfile(test_live=CHECKS)
    result = run(pytester, *cl_target.args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = capfd.readouterr().out + result.stdout.str()
    assert "\x1b[" not in out and "\r" not in out, "plain mode wrote terminal control sequences"
    assert "cl: 3 checks in 1 row(s)" in out, out
    assert "3/3 checks done" in out and "1 failed" in out, out
    assert "." * 2 not in result.stdout.str().splitlines()[0], "pytest's progress dots were not left out"


def test_no_live_view_without_the_variable(
    pytester: pytest.Pytester, cl_target: Target, capfd: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_live=CHECKS)
    result = run(pytester, *cl_target.args)
    out = capfd.readouterr().out + result.stdout.str()
    assert "checks done" not in out, out
