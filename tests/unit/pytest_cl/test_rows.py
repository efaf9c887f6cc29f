"""``--cl-rows a,b`` (ini ``cl_rows``, env ``CL_ROWS``): only the tests of those conformance-matrix rows run."""

from __future__ import annotations

import pytest

from tests.unit.pytest_cl.conftest import Target, run

ROWS_SUITE = {
    "clsuite/__init__": "",
    "clsuite/plugins/__init__": "",
    "clsuite/protocol/__init__": "",
    "clsuite/plugins/test_hash": """
        def test_hash_one(compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            assert compute_client.submit("hash", f).result().status == "completed"

        def test_hash_two(cl_deployment):
            assert cl_deployment.offers("hash")
    """,
    "clsuite/plugins/test_exif": "def test_exif(cl_deployment):\n    raise AssertionError('not selected')\n",
    "clsuite/protocol/test_jobs": "def test_jobs(cl_deployment):\n    raise AssertionError('not selected')\n",
    "clsuite/test_unrelated": "def test_plain():\n    raise AssertionError('not selected')\n",
}


def test_rows_run_only_the_tests_of_those_rows(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makepyfile(**ROWS_SUITE)
    result = run(pytester, *cl_target.args, *mode, "--cl-rows", "hash")
    result.assert_outcomes(passed=2, deselected=None if mode else 3)  # xdist's summary leaves deselection out
    result.stdout.fnmatch_lines(["cl: rows: hash (--cl-rows; the other tests are deselected)"])
    out = result.stdout.str()
    assert "| hash | 2 | 0 | 0 | 0 | 1 |" in out and "| exif |" not in out and "| protocol |" not in out


def test_rows_from_the_environment_and_the_ini(
    pytester: pytest.Pytester, cl_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(**ROWS_SUITE)
    pytester.makeini("[pytest]\ncl_rows = exif\n")
    monkeypatch.setenv("CL_ROWS", "hash, protocol")
    result = run(pytester, *cl_target.args, "-k", "not test_jobs")
    result.assert_outcomes(passed=2, deselected=3)
    monkeypatch.delenv("CL_ROWS")
    run(pytester, *cl_target.args).assert_outcomes(failed=1, deselected=4)


def test_an_unknown_row_is_a_usage_error(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makepyfile(**ROWS_SUITE)
    result = run(pytester, *cl_target.args, *mode, "--cl-rows", "hash,nope,face")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: cl: --cl-rows / cl_rows / CL_ROWS: unknown row(s): nope, face. Known rows of the collected "
            "tests: exif, hash, unrelated, protocol."
        ]
    )
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out and "passed" not in out
