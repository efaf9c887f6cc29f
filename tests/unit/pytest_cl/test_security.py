"""Security findings (``cl_security``): listed first, never a tolerated gap, acknowledged only in the expectation
file's ``security:`` section; the judges of the conformance suite's security probes; a plugin that fails every job
said once."""

from __future__ import annotations

import json

import pytest

from pytest_cl._lacks import ExpectLacksError, compare_lacks, parse_expected
from pytest_cl.conformance.protocol._security import judge_input_path, judge_output_path, judge_upload_name
from tests.unit.pytest_cl.conftest import Target, run

SECURITY_TESTS = """
import pytest

@pytest.mark.cl_security("tokens without exp accepted")
def test_exp(compute_client):
    assert False, "GET /jobs/{id} with a signed token without 'exp': expected HTTP 401, got 404"

@pytest.mark.cl_security("admin routes open in guest mode")
def test_admin_closed(compute_client):
    pass

@pytest.mark.cl_security("uploads written outside the job's folder")
def test_cannot_check(compute_client):
    pytest.skip("needs a private key")

@pytest.mark.cl_needs_fix("a real updated_at")
def test_gap(compute_client):
    assert False, "updated_at echoes created_at"
"""
PRETEND = """
import pytest
import pytest_cl.deployment

@pytest.fixture(autouse=True, scope="session")
def _pretend_upstream():
    old = pytest_cl.deployment.REFERENCE_SERVICE
    pytest_cl.deployment.REFERENCE_SERVICE = "not-the-reference"
    yield
    pytest_cl.deployment.REFERENCE_SERVICE = old
"""


def test_a_security_finding_fails_the_run_and_is_listed_first(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makeconftest(PRETEND)
    pytester.makepyfile(test_sec=SECURITY_TESTS)
    result = run(pytester, *cl_target.args, "--cl-report", "out/r.json")
    result.assert_outcomes(passed=1, xfailed=2, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # no expectation file: the finding fails the run
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*cl: SECURITY FINDINGS (1, 1 not acknowledged)*",
            "SECURITY (NOT acknowledged: fails the run): tokens without exp accepted",
            "    test_sec.py::test_exp: GET /jobs/{id} with a signed token without 'exp': expected HTTP 401, got 404",
        ]
    )
    assert (
        out.index("SECURITY FINDINGS") < out.index("- cl: deployment under test -") < out.index("deployment lacks (1)")
    )
    data = json.loads((pytester.path / "out/r.json").read_text())
    assert list(data)[:4] == ["deployment", "missing_worker_policy", "header", "security_findings"]
    assert data["security_findings"] == [
        {
            "test": "test_sec.py::test_exp",
            "finding": "tokens without exp accepted",
            "detail": "GET /jobs/{id} with a signed token without 'exp': expected HTTP 401, got 404",
            "acknowledged": False,
        }
    ]
    assert [x["lack"] for x in data["deployment_lacks"]] == ["needs fix: a real updated_at"]  # not a finding
    markdown = (pytester.path / "out/r.md").read_text()
    assert markdown.index("## Security findings (1)") < markdown.index("| row |")


def test_a_security_finding_on_the_reference_deployment_is_a_finding_too(
    pytester: pytest.Pytester, cl_target: Target
) -> None:
    pytester.makepyfile(test_sec=SECURITY_TESTS)
    result = run(pytester, *cl_target.args, "--cl-strict")
    result.assert_outcomes(passed=1, xfailed=1, skipped=1, failed=1)  # the needs_fix check fails on the reference
    result.stdout.fnmatch_lines(["*cl: SECURITY FINDINGS (1, 1 not acknowledged)*"])


@pytest.mark.parametrize(
    ("listed", "outcome", "lines"),
    [
        (
            [
                "a real updated_at",
                "security:",
                "tokens without exp accepted",
                "uploads written outside the job's folder",
            ],
            0,
            [
                "*cl: SECURITY FINDINGS (1, 0 not acknowledged)*",
                "SECURITY (acknowledged): tokens without exp accepted",
                "*cl: deployment lacks: as expected*",
                "not checked by this run (its checks did not run): security: uploads written outside the job's folder",
            ],
        ),
        (
            ["a real updated_at", "security:", "tokens without exp accepted", "admin routes open in guest mode"],
            1,
            [
                "*deployment lacks: NOT as expected*",
                "security finding acknowledged by lacks.txt but not seen: admin routes open in guest mode (fixed, "
                "or no longer detected: remove it from the security: section)",
            ],
        ),
        (
            ["a real updated_at", "tokens without exp accepted"],  # listed as a gap: not an acknowledgement
            1,
            [
                "*cl: SECURITY FINDINGS (1, 1 not acknowledged)*",
                "SECURITY (NOT acknowledged: fails the run): tokens without exp accepted",
            ],
        ),
    ],
    ids=["acknowledged", "acknowledged-but-fixed", "listed-as-a-gap"],
)
def test_the_security_section_of_the_expectation_file(
    pytester: pytest.Pytester, cl_target: Target, listed: list[str], outcome: int, lines: list[str]
) -> None:
    pytester.makeconftest(PRETEND)
    pytester.makepyfile(test_sec=SECURITY_TESTS)
    (pytester.path / "lacks.txt").write_text("\n".join(listed) + "\n")
    result = run(pytester, *cl_target.args, "--cl-expect-lacks", "lacks.txt", "--cl-report", "out/r.html")
    assert result.ret == outcome
    result.stdout.fnmatch_lines(lines)
    html = (pytester.path / "out/r.html").read_text()
    assert html.index("Security findings (1)") < html.index("Conformance matrix")


def test_security_section_syntax() -> None:
    text = "# gaps\na\n? b\nsecurity:\n# comment\nc\nd\n"
    expected = parse_expected(text)
    assert (expected.required, expected.optional, expected.security) == ({"a"}, {"b"}, {"c", "d"})
    assert expected.lines() == ["? b", "a", "security:", "c", "d"]
    with pytest.raises(ExpectLacksError, match=r"x\.lacks line 2: security findings cannot be optional"):
        parse_expected("security:\n? c\n", "x.lacks")
    with pytest.raises(ExpectLacksError, match="line 3: a second 'security:' line"):
        parse_expected("security:\nc\nSECURITY:\n", "x.lacks")
    comparison = compare_lacks(["needs fix: a"], expected, "x", security_seen=["c"], security_checked=["c", "d"])
    assert (comparison.ok, comparison.security_lost) == (False, ("d",))


def test_the_packaged_january_list_acknowledges_its_two_findings() -> None:
    from pytest_cl._lacks import read_expected

    expected = read_expected("upstream-2026-01")
    assert expected.security == {
        "tokens without 'exp' accepted (a leaked token never expires)",
        "admin routes open in guest mode while auth is configured",
    }
    assert not any("exp" in e or "guest mode" in e for e in expected.required)


# -- the judges of the probes ------------------------------------------------------------------------------
def test_input_path_probe() -> None:
    assert judge_input_path(422, None, None) is None  # does not know the field, requires file
    assert judge_input_path(400, None, None) is None
    finding = judge_input_path(200, "j1", {"status": "error", "error_message": "does not contain a video stream"})
    assert finding == (
        "POST /jobs/hls_streaming with input_absolute_path=/etc/hostname and no file was accepted (200, job j1), "
        "and the job ended error 'does not contain a video stream': any caller can make the server read its files "
        "(and tell from the error whether a path exists)"
    )
    assert "answered 500" in str(judge_input_path(500, None, None))


def test_output_path_probe() -> None:
    probe = "/tmp/cl-probe-1234"
    ignored = {"status": "completed", "params": {"variants": []}, "task_output": {"master_playlist": "output/a.m3u8"}}
    assert judge_output_path(422, None, None, probe, written=False) is None
    assert judge_output_path(200, "j", ignored, probe, written=False) is None  # the field was ignored
    used = {"status": "completed", "params": {}, "task_output": {"master_playlist": f"{probe}/adaptive.m3u8"}}
    finding = judge_output_path(200, "j", used, probe, written=False)
    assert finding is not None and f"its master_playlist is {probe}/adaptive.m3u8" in finding
    assert "any caller can make the server write files where it names" in finding
    failed = {"status": "error", "error_message": "boom", "params": {"output_absolute_path": probe}}
    finding = judge_output_path(200, "j", failed, probe, written=True)
    assert finding is not None and "the job's params carry the path" in finding and f"{probe} now exists" in finding


@pytest.mark.parametrize(
    ("input_path", "leaves"),
    [
        ("input/x.jpg", False),
        ("input/a/../x.jpg", False),
        ("input/../../x.jpg", True),
        ("../../x.jpg", True),
        ("/tmp/x.jpg", True),
        ("input\\..\\..\\x.jpg", True),
    ],
)
def test_upload_name_probe(input_path: str, leaves: bool) -> None:
    finding = judge_upload_name("../../x.jpg", 200, "j", input_path)
    assert (finding is not None) is leaves
    if finding:
        assert f"params.input_path is {input_path!r}, a path that leaves the job's input/ folder" in finding
    assert judge_upload_name("../../x.jpg", 422, None, None) is None


# -- a plugin that fails every job --------------------------------------------------------------------------
def test_a_plugin_that_fails_every_job_is_said_once(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makepyfile(
        **{
            "suite/__init__": "",
            "suite/plugins/__init__": "",
            "suite/plugins/test_fail": """
                import pytest

                @pytest.mark.parametrize("n", range(4))
                def test_job(compute_client, tmp_path, n):
                    f = tmp_path / "a.txt"
                    f.write_bytes(b"x")
                    record = compute_client.submit("fail", f, {"message": "name 'logger' is not defined"}).result(60)
                    assert record.status == "completed", f"fail job {record.job_id} ended {record.status}"
            """,
            "suite/plugins/test_hash": """
                def test_ok(compute_client, tmp_path):
                    f = tmp_path / "a.txt"
                    f.write_bytes(b"x")
                    assert compute_client.submit("hash", f, {"algorithm": "md5"}).result(60).status == "completed"
            """,
        }
    )
    result = run(pytester, *cl_target.args, "--cl-report", "out/r.json")
    result.assert_outcomes(passed=1, failed=4)
    out = result.stdout.str()
    line = "every fail job ended error: name 'logger' is not defined (4 checks)"
    result.stdout.fnmatch_lines(["*cl: plugins that failed every job*", line])
    assert out.index(line) < out.index("= FAILURES =")  # leads, before the tracebacks
    result.stdout.fnmatch_lines(
        [f"| fail ({line}) | 0 | 4 | 0 | 0 | 4 | * | * |", "| hash | 1 | 0 | 0 | 0 | 1 | * | * |"]
    )
    data = json.loads((pytester.path / "out/r.json").read_text())
    assert [p["text"] for p in data["plugin_failures"]] == [line]
    assert len(data["failures"]) == 4  # the individual failures stay in the report
