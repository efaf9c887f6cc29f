"""The HTML conformance report (``--cl-report PATH.html``) and the comparison with an earlier run (``--cl-compare``).

Real runs through pytester against the session deployment (its ``sleep`` and ``fail`` test plugins), plus the
size bound of a full-suite page rendered from synthetic data.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from typing import cast

import pytest

from pytest_cl._html import HINT, render
from pytest_cl._svg import COLOURS
from pytest_cl.report import NOISE_TEXT, Results, beyond_noise, compare
from tests.unit.pytest_cl.conftest import Target, run

SUITE = """
import os
import pytest

def _file(tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes(b"hello")
    return f

def test_md5(compute_client, tmp_path):
    assert compute_client.submit("hash", _file(tmp_path), {"algorithm": "md5"}).result().status == "completed"

@pytest.mark.parametrize("n", [1, 2, 3])
def test_sleep(compute_client, tmp_path, n):
    seconds = float(os.environ.get("SLOW_SECONDS", "0.01"))
    assert compute_client.submit("sleep", _file(tmp_path), {"seconds": seconds}).result().status == "completed"

def test_fail_job(compute_client, tmp_path):
    compute_client.submit("fail", _file(tmp_path), {"message": "deliberate boom"}).result()

def test_flips(compute_client):
    assert os.environ.get("FLIP") != "1", "flipped to failing"
"""

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|<script[^>]*\bsrc\b|@import|url\(""", re.I)


def external_references(html: str) -> list[str]:
    """What in the page would be loaded from elsewhere (src/href to a URL, <script src>, @import, url())."""
    return EXTERNAL.findall(html)


def _suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{"clsuite/__init__": "", "clsuite/plugins/__init__": "", "clsuite/plugins/test_mix": SUITE})


@pytest.mark.parametrize("token", ["with-token", "no-token"])
def test_html_report_has_header_matrix_charts_and_failure_forensics(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str], token: str
) -> None:
    _suite(pytester)
    auth = ("--cl-token", "s3cret-token") if token == "with-token" else ()
    result = run(pytester, *cl_target.args, *mode, *auth, "--cl-report", "out/cert.html")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["cl: report written to out/cert.html (+ .json)"])
    page = (pytester.path / "out/cert.html").read_text()
    data = json.loads((pytester.path / "out/cert.json").read_text())
    assert len(page.encode()) < 2_000_000
    assert external_references(page) == []
    assert "s3cret-token" not in page and "s3cret-token" not in json.dumps(data)
    # header: URL, version, workers, capabilities, policy, when, how long
    assert f"{cl_target.server_url}" in page and "cl_compute 0.1.0" in page
    assert "<dt>Capabilities</dt><dd>fail, hash, sleep</dd>" in page
    assert "skip (local run)" in page and "<dt>How long</dt>" in page and " UTC</dd>" in page
    header = data["header"]
    assert header["server_url"] == cl_target.server_url and header["capabilities"] == ["fail", "hash", "sleep"]
    # the matrix row: 5 passed (md5, 3 sleeps, flips), 1 failed, 5 jobs
    row = data["matrix"][0]
    assert row["latency_p50_ms"] > 0 and row["latency_p95_ms"] >= row["latency_p50_ms"]
    assert data["matrix"] == [
        {
            "row": "mix", "passed": 5, "failed": 1, "skipped": 0, "not_checked": 0, "jobs": 5,
            "latency_p50_ms": row["latency_p50_ms"], "latency_p95_ms": row["latency_p95_ms"],
        }
    ]  # fmt: skip
    assert re.search(r'<td><a href="#row-mix">mix</a></td>\s*<td class="ok">5</td><td class="bad">1</td>', page)
    # per row: the latency histogram and the time line of its jobs, with the per-job times from the workers
    assert page.count('aria-label="latency histogram"') == 1 and page.count('aria-label="job time line"') == 1
    jobs = [j for t in data["tests"].values() for j in t["jobs"]]
    assert len(jobs) == 5 and all(j["submitted"] <= j["terminal"] for j in jobs), jobs
    assert all(j["queued"] is not None and j["submitted"] <= j["queued"] for j in jobs), jobs
    assert {j["status"] for j in jobs} == {"completed", "error"}
    # the failed check: message, job record, MQTT events with times, curl lines (the token as $CL_TOKEN)
    nodeid = "clsuite/plugins/test_mix.py::test_fail_job"
    failure = data["failures"][nodeid]
    assert "JobFailedError" in failure["message"] and "deliberate boom" in failure["message"]
    (job,) = failure["jobs"]
    assert '"status": "error"' in job["record"] and "deliberate boom" in job["record"]
    assert any(" queued " in e for e in job["events"]) and any(" error" in e for e in job["events"]), job
    post = next(r for r in failure["requests"] if r["line"].startswith("POST"))
    header_arg = '-H "Authorization: Bearer $CL_TOKEN" ' if auth else ""
    curl = f"curl -sS -X POST {cl_target.server_url}/jobs/fail {header_arg}-F 'message=deliberate boom'"
    assert post["curl"].startswith(curl)
    assert "JobFailedError" in page and "deliberate boom" in page
    assert "curl -sS -X POST" in page and ("Bearer $CL_TOKEN" in page) == bool(auth)
    assert "flipped to failing" not in page
    assert data["deployment_lacks"] == []  # the reference deployment has every fix (see the next test)
    # explains itself: the verdict first, the deployment once, a legend for every mark and line
    verdict = page.index('<div class="verdict bad" id="verdict">')
    assert verdict < page.index('id="deployment"') < page.index('id="matrix"')
    assert "<h2>Not certified</h2>" in page and "<li>1 check(s) failed</li>" in page
    assert data["deployment"] not in page and page.count("<dt>URL</dt>") == 1 and "<dt>Deployment</dt>" not in page
    assert "p50 (median)</span>" in page and "p95</span>" in page and "end: error the check did not expect" in page
    assert COLOURS["expected_error"] not in page.split('id="legend"')[1].split("</div>", 1)[1]  # its error: unexpected


def test_html_report_lists_what_the_deployment_lacks() -> None:
    results = Results()
    data = results.as_dict("remote X", "skip (local run)")
    data["deployment_lacks"] = [
        {"test": "t.py::test_a", "lack": "needs fix: events for deleted jobs"},
        {"test": "t.py::test_b", "lack": "needs fix: events for deleted jobs"},
    ]
    data["matrix"] = [{"row": "protocol", "passed": 0, "failed": 0, "skipped": 2, "not_checked": 0, "jobs": 0}]
    test = {"row": "protocol", "outcome": "skipped", "latencies_ms": [], "jobs": []}
    data["tests"] = {"t.py::test_a": test, "t.py::test_b": test}
    page = render(data)
    assert '<h2 id="lacks">Deployment lacks</h2>' in page
    assert "needs fix: events for deleted jobs: needed by <code>t.py::test_a</code>, <code>t.py::test_b</code>" in page
    assert '<td class="warn">2</td>' in page


def test_compare_marks_newly_failing_passing_and_a_slowed_plugin(
    pytester: pytest.Pytester, cl_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    run(pytester, *cl_target.args, "--cl-report", "old.json").assert_outcomes(passed=5, failed=1)
    monkeypatch.setenv("SLOW_SECONDS", "0.6")  # the sleep plugin's jobs: ~50 ms before, ~650 ms now
    monkeypatch.setenv("FLIP", "1")
    result = run(pytester, *cl_target.args, "--cl-report", "new.html", "--cl-compare", "old.json")
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*cl: compared with old.json*",
            "newly failing: clsuite/plugins/test_mix.py::test_flips (mix)",
            "latency mix: slower: p50 * -> * ms (x*)",
            f"noise: {NOISE_TEXT}",
        ]
    )
    data = json.loads((pytester.path / "new.json").read_text())
    comparison = data["comparison"]
    assert comparison["newly_failing"] == [{"test": "clsuite/plugins/test_mix.py::test_flips", "row": "mix"}]
    assert comparison["newly_passing"] == []
    (change,) = comparison["latency_changes"]
    assert change["row"] == "mix" and change["new_p50_ms"] > 1.5 * change["old_p50_ms"] + 50
    page = (pytester.path / "new.html").read_text()
    assert '<span class="badge new-fail">1 newly failing</span>' in page
    assert '<span class="badge slower">slower: p50' in page and html.escape(NOISE_TEXT) in page
    # back again: the check newly passes; the Markdown report says so too
    monkeypatch.delenv("FLIP")
    monkeypatch.delenv("SLOW_SECONDS")
    run(pytester, *cl_target.args, "--cl-report", "back.json", "--cl-compare", "new.json").assert_outcomes(
        passed=5, failed=1
    )
    markdown = (pytester.path / "back.md").read_text()
    assert "## Compared with new.json" in markdown
    assert "* newly passing: clsuite/plugins/test_mix.py::test_flips (mix)" in markdown
    assert "* latency mix: faster: p50" in markdown and "## Failed checks" in markdown


def test_beyond_noise_needs_both_the_ratio_and_the_absolute_change() -> None:
    assert not beyond_noise(100, 140)  # ratio 1.4
    assert not beyond_noise(10, 40)  # ratio 4, but only 30 ms
    assert beyond_noise(100, 200) and beyond_noise(300, 100)
    assert not beyond_noise(200, 140)  # ratio 0.7


def test_compare_file_must_be_an_earlier_report(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makefile(".json", bad='{"x": 1}')
    result = run(pytester, *cl_target.args, "--cl-compare", "bad.json")
    result.stderr.fnmatch_lines(["*cl: --cl-compare / cl_compare / CL_COMPARE: bad.json: not a --cl-report JSON*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_html_report_without_jinja2_names_the_extra(
    pytester: pytest.Pytester, cl_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    result = run(pytester, *cl_target.args, "--cl-report", "r.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(['ERROR: cl: --cl-report PATH.html needs jinja2: pip install "cl-client[report]"'])
    with pytest.raises(ImportError, match=re.escape(HINT)):
        render({})


def full_suite_data(checks: int = 280, jobs_per_check: int = 2, failures: int = 20) -> dict[str, object]:
    """Report data the size of the full suite: ~280 checks over 12 rows, ~560 jobs, some failures."""
    t0 = 1_700_000_000.0
    tests: dict[str, dict[str, object]] = {}
    fails: dict[str, dict[str, object]] = {}
    rows: dict[str, dict[str, object]] = {}
    for i in range(checks):
        row = f"plugin{i % 12}"
        nodeid = f"pytest_cl/conformance/plugins/test_{row}.py::test_check_{i}[param-{i}]"
        jobs = []
        for k in range(jobs_per_check):
            start = t0 + i * 0.7 + k * 0.1
            jobs.append(
                {
                    "id": f"{i:08x}-0000-4000-8000-{k:012x}", "task": row, "submitted": start,
                    "queued": start + 0.01, "processing": start + 0.05 + (i % 7) * 0.1,
                    "terminal": start + 0.3 + (i % 11) * 0.05, "status": "error" if i % 50 == 0 else "completed",
                }
            )  # fmt: skip
        outcome = "failed" if i < failures else "passed"
        tests[nodeid] = {"row": row, "outcome": outcome, "latencies_ms": [300.0 + i % 11 * 50] * 2, "jobs": jobs}
        entry = rows.setdefault(row, {"row": row, "passed": 0, "failed": 0, "skipped": 0, "not_checked": 0, "jobs": 0})
        entry[outcome] = int(entry[outcome]) + 1  # pyright: ignore[reportArgumentType]
        entry["jobs"] = int(entry["jobs"]) + jobs_per_check  # pyright: ignore[reportArgumentType]
        if outcome == "failed":
            fails[nodeid] = {
                "message": "AssertionError: " + "x" * 1500,
                "jobs": [
                    {"id": j["id"], "task": row, "record": "{\n" + '  "k": 1,\n' * 30 + "}", "events": ["e"] * 5}
                    for j in jobs
                ],
                "requests": [{"line": "POST http://h/jobs/x -> 200", "curl": "curl -sS -X POST http://h/jobs/x"}] * 10,
            }  # fmt: skip
    for entry in rows.values():
        entry["latency_p50_ms"], entry["latency_p95_ms"] = 400.0, 800.0
    data = Results().as_dict("cl_compute 0.1.0 at http://h", "fail (CI is set)")
    data.update(matrix=list(rows.values()), tests=tests, failures=fails, started=t0, finished=t0 + 200)
    return data


def test_full_suite_page_is_well_under_2_mb_and_self_contained() -> None:
    page = render(full_suite_data())
    assert len(page.encode()) < 1_000_000
    assert page.count('aria-label="job time line"') == 12
    assert external_references(page) == []
    assert "<script" not in page


def test_external_reference_check_finds_what_it_should() -> None:
    assert external_references('<img src="https://x/y.png">') and external_references("<a href='//cdn/x'>")
    assert external_references('<script src="a.js"></script>') and external_references("@import 'x.css';")
    assert not external_references('<a href="#row-hash">hash</a> http://127.0.0.1:8000 in text')


def test_compare_ignores_checks_missing_from_the_earlier_run(tmp_path: Path) -> None:
    results = Results()
    results.tests = {"a": ("r", "failed", []), "b": ("r", "passed", [])}
    old = {"tests": {"b": {"outcome": "failed"}}, "matrix": [{"row": "r", "latency_p50_ms": None}]}
    comparison = compare(old, results, "old.json")
    assert comparison.newly_failing == [] and comparison.newly_passing == [("b", "r")]
    assert comparison.lines()[0] == "newly passing: b (r)"


def test_histogram_uses_a_log_scale_for_a_long_tail() -> None:
    from pytest_cl._svg import histogram

    assert "log scale" in histogram([10.0] * 20 + [1000.0])
    assert "log scale" not in histogram([100.0, 120.0, 900.0]) and histogram([]) == ""
    assert "<title>1 job(s): 860 ms – 900 ms</title>" in histogram([100.0, 900.0])


def test_the_plugin_imports_no_jinja2_at_load_time() -> None:
    import subprocess

    code = "import sys, pytest_cl.plugin, pytest_cl.report; assert 'jinja2' not in sys.modules, 'jinja2 imported'"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _data(tests: dict[str, dict[str, object]], **extra: object) -> dict[str, object]:
    data = Results().as_dict(
        "cl_compute 0.1.0 at http://h (mqtt off)", "skip (local run)", header={"server_url": "http://h"}
    )
    matrix: dict[str, dict[str, object]] = {}
    for test in tests.values():
        row = matrix.setdefault(str(test["row"]), {"row": test["row"], "passed": 0, "failed": 0, "skipped": 0,
                                                   "not_checked": 0, "jobs": 0})  # fmt: skip
        row[str(test["outcome"])] = int(cast(int, row[str(test["outcome"])])) + 1
    data.update(tests=tests, matrix=list(matrix.values()), **extra)
    return data


def _test(
    row: str, outcome: str, latencies: list[float], jobs: list[dict[str, object]] | None = None
) -> dict[str, object]:
    return {"row": row, "outcome": outcome, "latencies_ms": latencies, "jobs": jobs or []}


def test_the_verdict_is_certified_with_known_gaps_or_not_certified() -> None:
    passed = {"t.py::a": _test("hash", "passed", [10.0])}
    page = render(_data(passed))
    assert '<div class="verdict good" id="verdict">' in page and "<h2>Certified</h2>" in page
    skipped = {**passed, "t.py::b": _test("hash", "skipped", [])}
    page = render(_data(skipped))
    assert "<h2>Certified with known gaps</h2>" in page and "1 skipped, 0 not checked" in page
    finding = {"test": "t.py::s", "finding": "exp not checked", "detail": "d", "acknowledged": True}
    page = render(_data(passed, security_findings=[finding]))
    assert "<h2>Certified with known gaps</h2>" in page and "1 security finding(s), all acknowledged" in page
    assert page.index('id="verdict"') < page.index('id="security"') < page.index('id="deployment"')
    page = render(_data(passed, security_findings=[{**finding, "acknowledged": False}]))
    assert '<div class="verdict bad" id="verdict">' in page and "1 not acknowledged" in page


def test_every_row_shares_one_latency_scale() -> None:
    """A long tail in one row puts every row's histogram on the same log axis, from the report's min to max."""
    tests = {
        "a.py::x": _test("narrow", "passed", [100.0, 110.0, 120.0]),
        "b.py::y": _test("tail", "passed", [10.0] * 20 + [1000.0]),
    }
    page = render(_data(tests))
    charts = re.findall(r'<svg class="chart"[^>]*aria-label="latency histogram">.*?</svg>', page)
    assert len(charts) == 2
    assert all("log scale" in c and ">10 ms<" in c and ">1.00 s<" in c for c in charts), charts
    assert "on one log scale shared by every row" in page


def test_jobs_whose_error_the_check_expected_are_drawn_apart_with_a_legend() -> None:
    t0 = 1_700_000_000.0
    job = {"id": "j1", "task": "fail", "submitted": t0, "queued": t0 + 0.01, "processing": t0 + 0.02,
           "terminal": t0 + 0.1, "status": "error"}  # fmt: skip
    expected = render(_data({"t.py::a": _test("fail", "passed", [100.0], [job])}))
    unexpected = render(_data({"t.py::a": _test("fail", "failed", [100.0], [{**job, "id": "j2"}])}))
    end = f'width="4" height="7" fill="{COLOURS["expected_error"]}"'
    assert end in expected and "(an error the check expected)" in expected
    assert end not in unexpected and f'width="4" height="7" fill="{COLOURS["error"]}"' in unexpected
    assert "1 job(s) ended in an error their check expected" in expected
    assert "end: error the check expected" in expected and "end: error the check did not expect" in expected
