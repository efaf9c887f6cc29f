"""``cl-client load --find-capacity``: the search's logic in process, and one short search for real.

The pure parts (objective, ramp, a step's measure and verdict, the report, CSV/JSON, the SVG chart, the comparison,
``--fail-on capacity<N``, the command lines) run here; Locust runs only in child processes (it monkey-patches the
standard library with gevent). The real search drives a one-worker reference deployment running ``exif`` with a
Locust master and two worker processes; an MQTT subscriber of the deployment's broker is the witness that every
job was counted once and none was lost.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cl_client._capacity import (
    SUSTAINED,
    CapacityReport,
    Done,
    Objective,
    Ramp,
    Step,
    chart,
    compare,
    measure,
)
from cl_client._cli_common import CliState
from cl_client._cli_load import (
    CAPACITY_LOCUSTFILE,
    LoadPlan,
    LoadRequest,
    build_plan,
    capacity_verdict,
    parse_ceiling,
    run_plan,
)
from cl_client._load import DELETE, JOB, SUBMIT, LoadUsageError, Summary, Threshold, parse_thresholds
from cl_client.cli import cli
from cl_compute.deployment import Deployment
from tests.unit.client.witness import Witness

P95_2S = Objective(p95_ms=2000)


def jobs(rate: float, start: float, end: float, name: str = "hash", ms: float = 100.0, failed: int = 0) -> list[Done]:
    """``rate`` jobs/s of ``name`` ending evenly in [start, end), the first ``failed`` of them failed."""
    n = round(rate * (end - start))
    return [Done(start + (i + 0.5) / rate, name, ms, i < failed) for i in range(n)]


# -- objective and ramp --------------------------------------------------------------------------------------
def test_objective_parses_units_and_rejects_bad_input() -> None:
    assert Objective.parse("p95=2s") == Objective(p95_ms=2000)
    assert Objective.parse("p95=1500ms,p99=5s,errors=1%") == Objective(1500, 5000, 1, True)
    assert Objective.parse("p99=1m, errors=3").p99_ms == 60_000
    assert Objective.parse("p95=2s,errors=0").text() == "p95=2s,errors=0"
    for bad, words in [("", "latency limit"), ("errors=0", "latency limit"), ("p50=1s", "unknown key"),
                       ("p95=soon", "duration"), ("p95=0s", "positive"), ("p95=1s,errors=x", "N or N%")]:  # fmt: skip
        with pytest.raises(LoadUsageError, match=words):
            Objective.parse(bad)


def test_ramp_raises_the_users_and_checks_its_settings() -> None:
    ramp = Ramp(start=1, factor=1.5, max_steps=6, pace=4)
    users = ramp.users()
    assert users == [4, 6, 9, 14, 21, 32]
    assert [ramp.offered(u) for u in users[:2]] == [1.0, 1.5]
    assert Ramp(start=0.1, factor=1.01, max_steps=3, pace=1).users() == [1, 2, 3]  # always one more user
    for bad, words in [(Ramp(start=0), "start"), (Ramp(factor=1), "factor"), (Ramp(max_steps=0), "max-steps"),
                       (Ramp(step_time=10, settle=9), "settle")]:  # fmt: skip
        with pytest.raises(LoadUsageError, match=words):
            bad.check()


# -- a step's verdict ------------------------------------------------------------------------------------------
def test_a_step_within_the_objective_is_met_and_counts_only_its_window() -> None:
    done = jobs(4, 0, 10) + jobs(2, 10, 20, name="exif", ms=900) + jobs(50, 20, 30, ms=9000)
    step = measure(1, 8, 2.0, done, 10, 20, P95_2S)  # only the exif jobs ended in [10, 20)
    assert step.met and step.culprit is None
    assert step.total.jobs == 20 and math.isclose(step.total.rate, 2.0)
    assert set(step.plugins) == {"exif"} and step.total.p95 == 900
    assert measure(1, 40, 6.0, done, 10, 20, P95_2S).broken == ("achieved 2.00 jobs/s < 90% of offered 6.00",)


def test_a_step_breaks_on_latency_and_names_the_plugin() -> None:
    done = jobs(4, 0, 10, name="hash", ms=300) + jobs(4, 0, 10, name="face_detection", ms=6000)
    step = measure(3, 32, 8.0, done, 0, 10, P95_2S)
    assert not step.met and step.culprit == "face_detection"
    assert any(b.startswith("p95 ") for b in step.broken)
    assert step.plugins["hash"].p95 == 300


def test_a_step_breaks_on_errors_and_on_an_offered_rate_it_cannot_sustain() -> None:
    errors = measure(1, 4, 1.0, jobs(1, 0, 10, failed=2, name="exif"), 0, 10, P95_2S)
    assert errors.broken == ("2 failed job(s) > 0 allowed",) and errors.culprit == "exif"
    allowed = measure(1, 4, 1.0, jobs(1, 0, 10, failed=2), 0, 10, Objective(2000, None, 20, True))
    assert allowed.met
    behind = measure(2, 40, 10.0, jobs(10 * SUSTAINED - 1, 0, 10), 0, 10, P95_2S)
    assert not behind.met and "achieved" in behind.broken[0] and behind.culprit == "hash"


def steps() -> tuple[Step, ...]:
    mk = [(2.0, 300.0, 0), (4.0, 600.0, 0), (8.0, 2500.0, 0), (16.0, 5000.0, 0)]
    out: list[Step] = []
    for i, (rate, ms, failed) in enumerate(mk, 1):
        done = jobs(rate * 0.75, 0, 10, "hash", ms / 3, failed) + jobs(rate * 0.25, 0, 10, "exif", ms, failed)
        out.append(measure(i, int(rate * 4), rate, done, 0, 10, P95_2S))
    return tuple(out)


def test_report_knee_capacity_per_plugin_and_broken_step() -> None:
    report = CapacityReport(steps()[:3], "p95=2s,errors=0", "hash=3,exif=1", {"date": "d", "machine": "m"})
    assert report.knee is not None and report.knee.index == 2
    assert report.broke is not None and report.broke.index == 3 and report.broke.culprit == "exif"
    assert math.isclose(report.capacity, 4.0)
    assert report.per_plugin() == {"exif": 1.0, "hash": 3.0}
    text = "\n".join(report.lines())
    assert "capacity: 4.00 jobs/s of mix hash=3,exif=1" in text and "broke at step 3" in text
    assert "exif's latency broke it" in text
    again = CapacityReport.from_json(report.to_json())
    assert again.as_dict() == report.as_dict() and again.meta == {"date": "d", "machine": "m"}
    rows = report.to_csv().splitlines()
    assert rows[0].startswith("step,users,offered,plugin") and len(rows) == 1 + 3 * 3
    none_met = CapacityReport(steps()[2:], "p95=2s,errors=0", "hash=3,exif=1")
    assert none_met.knee is None and none_met.capacity == 0 and none_met.per_plugin() == {}
    assert "no step met" in "\n".join(none_met.lines())
    never_broke = CapacityReport(steps()[:2], "p95=2s,errors=0", "hash=3,exif=1")
    assert never_broke.broke is None and "not reached" in never_broke.lines()[-1]
    with pytest.raises(LoadUsageError, match="capacity report"):
        CapacityReport.from_json(json.dumps({"jobs": {}}))


def test_chart_is_valid_svg_with_every_point_labelled_the_objective_knee_ceiling_and_note() -> None:
    report = CapacityReport(steps()[:3], "p95=2s,errors=0", "hash=3,exif=1",
                            {"machine": "2 cores x86_64", "date": "2026-12-05", "note": "loaded machine"})  # fmt: skip
    svg = chart(report, ceiling={"hash": 35.0, "exif": 9.0})
    root = ET.fromstring(svg)  # well-formed, no duplicate attributes
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    joined = "\n".join(texts)
    for wanted in ("2 cores x86_64", "2026-12-05", "loaded machine", "mix hash=3,exif=1", "knee: 4.00 jobs/s",
                   "objective p95=2s,errors=0", "broke (exif)", "ceiling 20.3 jobs/s", "2.0", "4.0", "8.0",
                   "2.50 s"):  # fmt: skip
        assert wanted in joined, (wanted, texts)
    assert len(root.findall(".//{http://www.w3.org/2000/svg}circle")) == 3


def test_chart_spaces_geometric_steps_evenly_keeps_labels_apart_and_draws_the_deployments_ceiling() -> None:
    """The finder's offered load grows by a factor per step: on a linear axis its first steps crowded into a few
    pixels with their labels written over each other (the idle-machine chart); the offered axis is logarithmic."""
    offered = [2.0 * 1.4**i for i in range(11)]
    built = tuple(measure(i, i * 4, rate, jobs(rate, 0, 10, "hash", 100), 0, 10, P95_2S)
                  for i, rate in enumerate(offered, 1))  # fmt: skip
    report = CapacityReport(built, "p95=2s,errors=0", "hash=1", {"deployment_workers": 2, "note": "idle machine"})
    svg = chart(report, ceiling={"hash": 30.0})
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    xs = [float(c.get("cx", "0")) for c in root.iter(f"{ns}circle")]
    gaps = [b - a for a, b in itertools.pairwise(xs)]
    assert len(xs) == 11 and min(gaps) > 30 and max(gaps) - min(gaps) < 1, gaps  # evenly spaced, room for a label
    labels = {"".join(t.itertext()) for t in root.iter(f"{ns}text")}
    assert {f"{rate:.1f}" for rate in offered} <= labels  # every point labelled
    assert "ceiling 60.0 jobs/s (2 workers x one-worker rate)" in labels and "ceiling 30.0 jobs/s" in "".join(labels)
    assert "offered jobs/s (log scale)" in labels
    note = next(t for t in root.iter(f"{ns}text") if "".join(t.itertext()) == "idle machine")
    assert note.get("fill") != "#c62828"  # red is for a loaded machine's warning


def test_compare_uses_both_runs_spread_and_charts_the_change() -> None:
    old = CapacityReport(steps()[:3], "p95=2s,errors=0", "hash=3,exif=1", {"date": "before"})
    same = compare(old, old)
    assert [c.name for c in same] == ["all", "exif", "hash"] and not any(c.beyond for c in same)
    half = CapacityReport(
        tuple(measure(s.index, s.users, s.offered, jobs(s.total.rate / 2, 0, 10, "hash", 100), 0, 10, P95_2S)
              for s in steps()[:2]) + steps()[2:3],
        "p95=2s,errors=0", "hash=3,exif=1",
    )  # fmt: skip
    changes = {c.name: c for c in compare(old, half)}
    assert changes["all"].beyond and changes["all"].ratio < 1 and "CHANGED" in changes["all"].text()
    assert changes["exif"].new == 0 and changes["exif"].beyond
    svg = chart(half, old=old)
    ET.fromstring(svg)
    assert "change since before" in svg and "CHANGED" in svg


def test_fail_on_capacity_parses_and_needs_the_search(tmp_path: Path) -> None:
    assert parse_thresholds(["capacity<3.5,errors=0"]) == [Threshold("capacity", 3.5), Threshold("errors", 0)]
    assert Threshold("capacity", 3).capacity_crossed(2.0) == "capacity 2 jobs/s < 3"
    assert Threshold("capacity", 3).capacity_crossed(3.0) is None
    with pytest.raises(LoadUsageError, match="capacity<"):
        parse_thresholds(["capacity=3"])
    with pytest.raises(LoadUsageError, match="needs --find-capacity"):
        build_plan(LoadRequest(url="http://x", fail_on=("capacity<3",)), summary=tmp_path / "s", port=1, environ={})
    assert parse_ceiling("hash=35.6, exif=9") == {"hash": 35.6, "exif": 9.0}
    for bad in ("hash", "hash=0", "=3"):
        with pytest.raises(LoadUsageError, match="--ceiling"):
            parse_ceiling(bad)


def test_build_plan_of_a_capacity_search(tmp_path: Path) -> None:
    ramp = Ramp(start=2, factor=2, step_time=8, settle=4, max_steps=5)
    request = LoadRequest(url="http://127.0.0.1:8080", mix="exif=1", workers=2, find_capacity=True,
                          slo="p95=1s,errors=0", ramp=ramp)  # fmt: skip
    plan = build_plan(request, summary=tmp_path / "s.json", port=5599, environ={}, executable="py")
    master = list(plan.master)
    assert master[:5] == ["py", "-m", "locust", "-f", str(CAPACITY_LOCUSTFILE)]
    assert "--users" not in master and "--run-time" not in master and "--spawn-rate" not in master
    assert master[master.index("--cl-slo") + 1] == "p95=1s,errors=0"
    assert master[master.index("--cl-pace") + 1] == "2"  # twice the latency objective
    assert master[master.index("--cl-max-steps") + 1] == "5"
    assert plan.capacity is not None and str(plan.capacity) in master
    assert all(str(CAPACITY_LOCUSTFILE) in w and "--cl-pace" in w for w in plan.workers)
    assert plan.thresholds == ()  # a search past the knee has failures: no default errors=0
    assert plan.deadline >= 5 * 8
    assert "capacity search within p95=1s,errors=0" in plan.announce and "2 worker" in plan.announce
    with pytest.raises(LoadUsageError, match="needs --slo"):
        build_plan(LoadRequest(url="http://x", find_capacity=True), summary=tmp_path / "s", port=1, environ={})


def test_load_announces_locust_before_it_speaks(tmp_path: Path) -> None:
    """Locust prints nothing until the end of a headless run (``--only-summary``): the command says it started."""
    plan = build_plan(LoadRequest(url="http://x", users=3, run_time=20), summary=tmp_path / "s", port=1, environ={})
    assert plan.announce == "cl-client load: Locust started against http://x: 3 users for 20 s (statistics at the end)"
    lines: list[str] = []
    quiet = LoadPlan((sys.executable, "-c", "pass"), (), {}, plan.summary, (), 30.0, None, plan.announce)
    assert run_plan(quiet, lines.append) == 0
    assert lines == [plan.announce]


def test_capacity_verdict_writes_json_csv_svg_and_applies_the_gate(tmp_path: Path) -> None:
    steps_file = tmp_path / "steps.json"
    request = LoadRequest(url="http://x", find_capacity=True, slo="p95=2s", fail_on=("capacity<5",))
    plan = build_plan(request, summary=tmp_path / "s.json", port=1, environ={})
    assert plan.capacity is not None
    assert capacity_verdict(plan, tmp_path / "out", meta={})[0] == 1  # no steps written
    plan.capacity.write_text(CapacityReport(steps()[:3], "p95=2s,errors=0", "hash=3,exif=1").to_json())
    old = CapacityReport(steps()[:3], "p95=2s,errors=0", "hash=3,exif=1", {"date": "before", "source": "o.json"})
    code, text = capacity_verdict(plan, tmp_path / "out", meta={"machine": "m"}, old=old)
    assert code == 1 and "FAILED: capacity 4 jobs/s < 5" in text and "compared with o.json (before)" in text
    written = CapacityReport.from_json((tmp_path / "out.json").read_text())
    assert written.meta["machine"] == "m" and written.knee is not None
    assert (tmp_path / "out.csv").read_text().startswith("step,")
    ET.fromstring((tmp_path / "out.svg").read_text())
    del steps_file


def test_capacity_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, words in [
        (["--find-capacity"], "needs --slo"),
        (["--find-capacity", "--slo", "p95=fast"], "duration"),
        (["--slo", "p95=2s"], "go with --find-capacity"),
        (["--fail-on", "capacity<3"], "needs --find-capacity"),
        (["--find-capacity", "--slo", "p95=2s", "--compare", str(tmp_path / "none.json")], "cannot read"),
        (["--find-capacity", "--slo", "p95=2s", "--step-time", "5s", "--settle", "4s"], "--settle"),
    ]:
        result = runner.invoke(cli, ["load", "http://127.0.0.1:9", *args], obj=CliState())
        assert result.exit_code == 2 and words in result.output, (args, result.output)


# -- one short search for real ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with Deployment(workers=1, tasks=["face_detection"]) as dep:
        yield dep


def test_find_capacity_finds_the_knee_and_loses_no_job(deployment: Deployment, tmp_path: Path) -> None:
    """Five steps at most (2, 4, 8, 16, 32 jobs/s of face_detection on ONE deployment worker): one of them cannot
    be sustained on any machine, so the search must stop at a broken step; every job is counted once. (Not exif:
    without ExifTool, on the pip-only path, the pure-Python reader sustained all five steps.)"""
    witness = Witness(deployment.mqtt_url)
    summary_path = tmp_path / "summary.json"
    out = tmp_path / "cap"
    try:
        argv = [
            sys.executable, "-m", "cl_client", "load", deployment.server_url, "--mqtt", deployment.mqtt_url,
            "--mix", "face_detection=1", "--workers", "2", "--find-capacity", "--slo", "p95=1s,errors=0",
            "--capacity-start", "2", "--capacity-factor", "2", "--step-time", "8s", "--settle", "4s",
            "--max-steps", "5", "--capacity-out", str(out), "--summary", str(summary_path),
            "--note", "test run", "--ceiling", "face_detection=5",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    finally:
        witness.close()
    print(done.stdout, done.stderr[-3000:])
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    assert "cl-client load: Locust master + 2 worker process(es) started" in done.stdout
    assert "Discarded report from unrecognized worker" not in done.stderr
    report = CapacityReport.from_json((tmp_path / "cap.json").read_text())
    assert report.broke is not None, report.lines()  # the knee was found: the search stopped past it
    assert report.steps[-1] is report.broke or report.steps[-1] == report.broke
    assert report.meta["note"] == "test run" and report.meta["url"] == deployment.server_url
    announced = httpx.get(f"{deployment.server_url}/capabilities", timeout=10).json()["num_workers"]
    assert report.meta["deployment_workers"] == announced  # the chart's all-workers ceiling
    ET.fromstring((tmp_path / "cap.svg").read_text())
    assert (tmp_path / "cap.csv").read_text().startswith("step,")
    summary = Summary.from_json(summary_path.read_text())
    completed = witness.jobs("completed")
    job, submit, delete = (summary.row(kind, "face_detection") for kind in (JOB, SUBMIT, DELETE))
    assert job is not None and submit is not None and delete is not None
    assert summary.jobs.requests == job.requests == submit.requests == delete.requests == len(completed) > 0
    assert witness.jobs("queued") == completed  # no job submitted and lost
    assert sum(s.total.jobs for s in report.steps) <= summary.jobs.requests
    assert httpx.get(f"{deployment.server_url}/admin/jobs/storage/size").json()["job_count"] == 0
