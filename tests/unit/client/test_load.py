"""Load-test logic in process (no Locust here: it would monkey-patch this pytest process with gevent).

``cl_client._load`` (mix, probes, checks, one job's run, summary, thresholds) and the pure parts of
``cl-client load`` (``build_plan``, ``verdict``), the jobs against a real reference deployment.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cl_client import ComputeClient, JobResponse
from cl_client._cli_common import CliState
from cl_client._cli_load import LOCUSTFILE, LoadRequest, build_plan, parse_run_time, verdict
from cl_client._load import (
    DELETE,
    JOB,
    PROBES,
    SUBMIT,
    InFlight,
    LoadUsageError,
    Picker,
    ResultCheckError,
    Row,
    Summary,
    Threshold,
    check_exif,
    check_hash,
    crossed,
    format_summary,
    parse_mix,
    parse_thresholds,
    run_job,
)
from cl_client.cli import cli
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue, load_catalogue

CATALOGUE: MediaCatalogue = load_catalogue()


@dataclass
class Fired:
    request_type: str
    name: str
    response_time: float
    exception: BaseException | None
    context: dict[str, object]


class Recorder:
    """Stands where Locust's ``events.request.fire`` would be."""

    def __init__(self) -> None:
        self.events: list[Fired] = []

    def __call__(
        self,
        *,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None,
        context: dict[str, object],
    ) -> None:
        del response_length
        self.events.append(Fired(request_type, name, response_time, exception, context))

    def kinds(self) -> list[str]:
        return [e.request_type for e in self.events]


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with Deployment(workers=1, tasks=["hash", "exif"]) as dep:
        yield dep


@pytest.fixture
def client(deployment: Deployment) -> Iterator[ComputeClient]:
    with ComputeClient(deployment.server_url, mqtt_url=deployment.mqtt_url) as c:
        yield c


def job_count(deployment: Deployment) -> int:
    return int(httpx.get(f"{deployment.server_url}/admin/jobs/storage/size").json()["job_count"])


# -- mix, picker ---------------------------------------------------------------------------------------------
def test_parse_mix_weights_names_and_errors() -> None:
    assert parse_mix("hash=5, exif=2,clip-embedding") == {"hash": 5, "exif": 2, "clip_embedding": 1}
    assert parse_mix("hash=1,hash=2,exif=0") == {"hash": 3}
    for bad, words in [("nope=1", "unknown plugin"), ("hash=x", "whole number"), ("hash=-1", ">= 0"),
                       ("exif=0", "expected"), ("", "expected")]:  # fmt: skip
        with pytest.raises(LoadUsageError, match=words):
            parse_mix(bad)


def test_picker_follows_the_weights() -> None:
    picker = Picker({"hash": 3, "exif": 1}, seed=7)
    picks = [picker.next() for _ in range(4000)]
    assert 0.70 < picks.count("hash") / len(picks) < 0.80
    first = Picker({"hash": 1, "exif": 1}, seed=3)
    second = Picker({"hash": 1, "exif": 1}, seed=3)
    assert [first.next() for _ in range(20)] == [second.next() for _ in range(20)]


def test_every_probe_names_a_committed_file() -> None:
    for probe in PROBES.values():
        assert CATALOGUE[probe.media].path.is_file(), probe


# -- checks ----------------------------------------------------------------------------------------------------
def record(task_type: str, **task_output: object) -> JobResponse:
    return JobResponse.model_validate(
        {
            "job_id": "j1",
            "task_type": task_type,
            "status": "completed",
            "task_output": task_output,
            "params": {"output_path": "output/x"},
        }
    )


def test_checks_accept_the_known_answer_and_reject_a_wrong_one() -> None:
    item = CATALOGUE["jpeg_exif"]
    md5 = hashlib.md5(item.read_bytes()).hexdigest()
    check_hash(record("hash"), lambda path: json.dumps({"hash_value": md5.upper()}).encode(), item)
    with pytest.raises(ResultCheckError, match="wrong result: md5"):
        check_hash(record("hash"), lambda path: b'{"hash_value": "00"}', item)
    check_exif(record("exif", make="Canon", model="Canon EOS R5"), lambda path: b"", item)
    with pytest.raises(ResultCheckError, match="make"):
        check_exif(record("exif", make="Nikon", model="Canon EOS R5"), lambda path: b"", item)
    webp = PROBES["image_conversion"].check
    webp(record("image_conversion"), lambda path: b"RIFF\0\0\0\0WEBPVP8 ", item)
    with pytest.raises(ResultCheckError, match="not WebP"):
        webp(record("image_conversion"), lambda path: b"\x89PNG\r\n\x1a\n", item)
    faces = PROBES["face_detection"].check
    group = CATALOGUE["group_4_faces"]
    faces(record("face_detection", num_faces=4), lambda path: b"", group)
    with pytest.raises(ResultCheckError, match="num_faces 3, expected 4"):
        faces(record("face_detection", num_faces=3), lambda path: b"", group)


# -- one job against the real deployment ---------------------------------------------------------------------
def test_run_job_reports_submit_job_and_delete_and_leaves_nothing(
    deployment: Deployment, client: ComputeClient
) -> None:
    fire = Recorder()
    in_flight = InFlight()
    for name in ("hash", "exif"):
        probe = PROBES[name]
        done = run_job(client, probe, CATALOGUE[probe.media], fire, timeout=30, in_flight=in_flight)
        assert done is not None and done.status == "completed"
    assert fire.kinds() == [SUBMIT, JOB, DELETE, SUBMIT, JOB, DELETE]
    assert all(e.exception is None for e in fire.events), fire.events
    job = next(e for e in fire.events if e.request_type == JOB)
    submit = next(e for e in fire.events if e.request_type == SUBMIT)
    assert job.response_time >= submit.response_time > 0
    assert not in_flight.ids
    assert job_count(deployment) == 0


def test_run_job_wrong_result_fails_the_job_and_keep_leaves_it(deployment: Deployment, client: ComputeClient) -> None:
    def wrong(rec: JobResponse, read: object, item: object) -> None:
        raise ResultCheckError(f"job {rec.job_id}: wrong result: test")

    probe = replace(PROBES["exif"], check=wrong)
    fire = Recorder()
    in_flight = InFlight()
    done = run_job(client, probe, CATALOGUE[probe.media], fire, timeout=30, keep=True, in_flight=in_flight)
    assert done is not None
    assert fire.kinds() == [SUBMIT, JOB]  # kept: no DELETE
    assert isinstance(fire.events[1].exception, ResultCheckError)
    assert job_count(deployment) == 1
    client.delete_job(done.job_id)
    assert job_count(deployment) == 0


def test_run_job_timeout_and_sweep(deployment: Deployment, client: ComputeClient) -> None:
    fire = Recorder()
    in_flight = InFlight()
    probe = PROBES["hash"]
    # Not deleted through run_job (keep) and timed out at once: the sweep deletes what is left.
    done = run_job(client, probe, CATALOGUE[probe.media], fire, timeout=0.000001, keep=True, in_flight=in_flight)
    assert fire.kinds() == [SUBMIT, JOB]
    if done is None:  # the usual case: no terminal state within a microsecond
        assert "JobTimeoutError" in type(fire.events[1].exception).__name__
    in_flight.ids.add(str(fire.events[0].context["job_id"]))
    assert in_flight.sweep(client) == 1
    assert job_count(deployment) == 0


def test_run_job_submit_failure_counts_as_one_failed_job() -> None:
    fire = Recorder()
    with ComputeClient("http://127.0.0.1:9", mqtt_url="off") as dead:
        probe = PROBES["hash"]
        assert run_job(dead, probe, CATALOGUE[probe.media], fire, timeout=5) is None
    assert fire.kinds() == [SUBMIT, JOB]
    assert all(e.exception is not None for e in fire.events)


# -- summary, thresholds, verdict --------------------------------------------------------------------------------
def row(method: str, name: str, requests: int, failures: int = 0, p95: float = 100.0, rps: float = 5.0) -> Row:
    return Row(method, name, requests, failures, rps, 50.0, 40.0, p95, p95 * 2, p95 * 3)


def test_thresholds_parse_and_cross() -> None:
    limits = parse_thresholds(["p95=200,errors=1%", "rps=4", "max=1000ms"])
    assert limits == [Threshold("p95", 200), Threshold("errors", 1, True), Threshold("rps", 4), Threshold("max", 1000)]
    ok = Summary(jobs=row(JOB, "all", 1000, failures=10))
    assert crossed(ok, limits) == []
    bad = Summary(jobs=row(JOB, "all", 100, failures=2, p95=250, rps=3))
    reasons = crossed(bad, limits)
    assert any("p95 250 ms > 200 ms" in r for r in reasons)
    assert any("errors 2% > 1%" in r for r in reasons)
    assert any("jobs/s 3 < 4" in r for r in reasons)
    assert crossed(bad, parse_thresholds(["errors=0"])) == ["errors 2 failed jobs > 0 failed jobs"]
    for bad_text, words in [("p42=1", "unknown metric"), ("p95=1%", "percentage"), ("p95=x", "number"),
                            ("errors=-1", ">= 0")]:  # fmt: skip
        with pytest.raises(LoadUsageError, match=words):
            parse_thresholds([bad_text])


def test_summary_round_trip_and_table() -> None:
    summary = Summary(
        jobs=row(JOB, "all", 30), rows=(row(JOB, "hash", 20), row(JOB, "exif", 10), row(SUBMIT, "hash", 20)),
        errors=(("JOB", "hash", "boom", 2),), duration=9.5, users=4, workers=2,
    )  # fmt: skip
    again = Summary.from_json(summary.to_json())
    assert again == summary
    assert again.row(SUBMIT, "hash") == row(SUBMIT, "hash", 20)
    assert again.row(SUBMIT, "exif") is None
    table = format_summary(summary)
    assert "hash" in table and "all" in table and "error x2 JOB hash: boom" in table
    assert row(JOB, "x", 0).error_ratio == 0.0


def test_build_plan_master_and_workers_on_loopback(tmp_path: Path) -> None:
    request = LoadRequest(
        url="http://127.0.0.1:8080", users=6, run_time=15, mix="hash=5,exif=2", workers=2, csv="out/run",
        html="r.html", fail_on=("p95=2000",), mqtt="mqtt://u:p@h:1",
    )  # fmt: skip
    plan = build_plan(request, summary=tmp_path / "s.json", port=5599, environ={"LOCUST_CL_MQTT": "x"},
                      executable="py")  # fmt: skip
    master = list(plan.master)
    assert master[:5] == ["py", "-m", "locust", "-f", str(LOCUSTFILE)]
    assert master[master.index("--cl-mix") + 1] == "hash=5,exif=2"
    assert master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    assert master[master.index("--master-bind-port") + 1] == "5599"
    assert master[master.index("--expect-workers") + 1] == "2"
    assert master[master.index("--run-time") + 1] == "15s"
    assert master[master.index("--spawn-rate") + 1] == "6"
    assert "--csv" in master and "--html" in master and "--headless" in master
    assert len(plan.workers) == 2 and "--worker" in plan.workers[0] and "5599" in plan.workers[0]
    assert "u:p@" not in " ".join(master)  # credentials travel in the environment
    assert plan.env["CL_MQTT_URL"] == "mqtt://u:p@h:1" and "LOCUST_CL_MQTT" not in plan.env
    assert plan.thresholds == (Threshold("p95", 2000),)
    single = build_plan(LoadRequest(url="https://x"), summary=tmp_path / "s.json", port=1, environ={})
    assert "--master" not in single.master and single.workers == ()
    assert single.thresholds == (Threshold("errors", 0),)
    for bad, words in [(LoadRequest(url="ftp://x"), "http"), (LoadRequest(url="http://x", users=0), "users"),
                       (LoadRequest(url="http://x", workers=-1), "workers")]:  # fmt: skip
        with pytest.raises(LoadUsageError, match=words):
            build_plan(bad, summary=tmp_path / "s.json", port=1, environ={})


def test_parse_run_time() -> None:
    assert [parse_run_time(t) for t in ("60", "60s", "1m30s", "1h", "2m")] == [60, 60, 90, 3600, 120]
    for bad in ("", "abc", "0s", "1d"):
        with pytest.raises(LoadUsageError):
            parse_run_time(bad)


def test_verdict_reads_the_summary(tmp_path: Path) -> None:
    plan = build_plan(LoadRequest(url="http://x", fail_on=("errors=1%",)), summary=tmp_path / "s.json", port=1,
                      environ={})  # fmt: skip
    assert verdict(plan, 2)[0] == 1 and "no summary" in verdict(plan, 2)[1]
    plan.summary.write_text(Summary(jobs=row(JOB, "all", 200, failures=1)).to_json())
    code, text = verdict(plan, 1)
    assert code == 0 and "passed" in text
    plan.summary.write_text(Summary(jobs=row(JOB, "all", 0)).to_json())
    assert verdict(plan, 0) == (1, verdict(plan, 0)[1]) and "no job was run" in verdict(plan, 0)[1]


# -- the command's edges, and the import rule ------------------------------------------------------------------
def test_load_without_the_extra_is_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Locust cannot be uninstalled for one test: ``is_installed`` answers as in a [load]-less install."""
    monkeypatch.setattr("cl_client._cli_load.is_installed", lambda name: name != "locust")
    result = CliRunner().invoke(cli, ["load", "http://127.0.0.1:9"], obj=CliState())
    assert result.exit_code == 3
    assert result.output.strip() == (
        'cl-client load needs the load extra (locust not installed): pip install "cl-client[load]"'
    )


def test_load_usage_errors_exit_2() -> None:
    result = CliRunner().invoke(cli, ["load", "http://127.0.0.1:9", "--mix", "nope=1"], obj=CliState())
    assert result.exit_code == 2 and "unknown plugin 'nope'" in result.output
    result = CliRunner().invoke(cli, ["load", "http://127.0.0.1:9", "--run-time", "soon"], obj=CliState())
    assert result.exit_code == 2 and "--run-time" in result.output


def test_import_cl_client_never_imports_locust_or_gevent() -> None:
    code = (
        "import sys, cl_client, cl_client.cli, cl_client._load, cl_client._cli_load;"
        "bad = [m for m in ('locust', 'gevent') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


GEVENT_SCRIPT = """
import sys, threading, time
from gevent import monkey; monkey.patch_all()   # what Locust does at import time
from cl_client import ComputeClient
url, mqtt, path = sys.argv[1:4]
client = ComputeClient(url, mqtt_url=mqtt)
assert client.monitor is not None and client.monitor.wait_ready(10), "MQTT not connected under gevent"
statuses = []
for _ in range(3):
    job = client.submit("hash", path, {"algorithm": "md5"}, on_progress=lambda r: statuses.append(r.status))
    assert job.wait(20).status == "completed"
    job.delete()
client.close()
left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print("statuses", sorted(set(statuses)), "threads left", left)
assert "processing" in statuses, statuses   # a job of milliseconds: its processing state is seen through its event
assert not left, left
"""


def test_client_under_gevent_monkey_patching_gets_events_and_closes(deployment: Deployment) -> None:
    """Locust patches threading/socket/select: paho's thread and the tracker's become greenlets and still work."""
    path = str(CATALOGUE["jpeg_exif"].path)
    out = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, deployment.server_url, deployment.mqtt_url, path],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'processing'" in out.stdout, out.stdout
    assert job_count(deployment) == 0
