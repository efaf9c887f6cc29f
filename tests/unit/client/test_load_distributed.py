"""``cl-client load --workers 2`` for real: Locust's master and two worker processes against the reference deployment.

A bounded run (15 s of load, hash and exif on a 2-worker deployment on random ports). The statistics are
checked against an independent witness: an MQTT subscriber of the deployment's broker that counts the jobs
that completed. Every job is counted once (JOB rows = witnessed jobs = SUBMIT rows = DELETE rows), none
failed, none is left on the server (``GET /admin/jobs/storage/size``), Locust's CSV agrees, and under gevent
the client's MQTT path worked (the jobs' events arrived: the run is far faster than polling would allow).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cl_client._cli_common import CliState
from cl_client._load import DELETE, JOB, SUBMIT, Summary
from cl_client.cli import cli
from cl_compute.deployment import Deployment
from tests.unit.client.witness import Witness

RUN_SECONDS = 15


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with Deployment(workers=2, tasks=["hash", "exif"]) as dep:
        yield dep


def test_distributed_load_counts_every_job_once_and_leaves_none(
    deployment: Deployment, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    witness = Witness(deployment.mqtt_url)
    summary_path = tmp_path / "summary.json"
    try:
        result = CliRunner().invoke(
            cli,
            [
                "load", deployment.server_url, "--mqtt", deployment.mqtt_url, "--users", "8",
                "--run-time", f"{RUN_SECONDS}s", "--workers", "2", "--mix", "hash=3,exif=1",
                "--csv", str(tmp_path / "run"), "--html", str(tmp_path / "report.html"),
                "--summary", str(summary_path), "--fail-on", "errors=0,p99=10000",
            ],
            obj=CliState(),
        )  # fmt: skip
    finally:
        witness.close()
    assert result.exit_code == 0, result.output
    # the command says Locust started (Locust itself is silent until the end), and the master no longer claims
    # to discard the workers' final reports (Locust's statistics merge them; the JOB rows below prove it)
    assert "cl-client load: Locust master + 2 worker process(es) started against" in result.output
    assert "Discarded report from unrecognized worker" not in capfd.readouterr().err
    summary = Summary.from_json(summary_path.read_text())
    print(result.output)

    completed = witness.jobs("completed")
    assert summary.jobs.failures == 0, summary.errors
    assert summary.jobs.requests == len(completed) >= 50, (summary.jobs, len(completed))
    assert summary.workers == 2
    for plugin in ("hash", "exif"):
        job, submit, delete = (summary.row(kind, plugin) for kind in (JOB, SUBMIT, DELETE))
        assert job is not None and submit is not None and delete is not None, plugin
        assert job.requests == submit.requests == delete.requests > 0, (job, submit, delete)
        assert job.failures == submit.failures == delete.failures == 0
    queued = witness.jobs("queued")
    assert completed == queued  # no job was submitted and then lost from the statistics
    count = httpx.get(f"{deployment.server_url}/admin/jobs/storage/size").json()["job_count"]
    assert count == 0

    with (tmp_path / "run_stats.csv").open() as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    assert sum(int(rows[(JOB, p)]["Request Count"]) for p in ("hash", "exif")) == summary.jobs.requests
    assert (tmp_path / "report.html").stat().st_size > 10_000
    # Event-driven waits under gevent: a hash job on an idle-ish worker ends in well under the 1 s poll interval.
    hash_row = summary.row(JOB, "hash")
    assert hash_row is not None and hash_row.p50 < 2000
