"""``cl-client jobs usage|list|clean``: storage use, the jobs this machine created (the local record), clean-up by
age, against the real reference deployment (click's CliRunner in-process)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cl_client import ComputeClient, JobNotFoundError
from cl_client._cli_common import CliState
from cl_client._cli_jobstore import human_size, parse_age
from cl_client._joblog import RECORD_ENV, JobRecord, default_record_path
from cl_client.cli import cli
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue

CL_ENV = ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_TOKEN", "CL_TIMEOUT", "CL_USERNAME")


@pytest.fixture(autouse=True)
def record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A record file of this test's own (never the user's ~/.cache)."""
    for name in CL_ENV:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "cache" / "jobs.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(path))
    return path


def run(dep: Deployment, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--server", dep.server_url, "--mqtt", dep.mqtt_url, *args], obj=CliState())


def _json(res: Result) -> object:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_plugin_commands_record_their_jobs_and_list_mine_shows_them(
    deployment: Deployment, media: MediaCatalogue, record: Path
) -> None:
    png, jpg = str(media["png_800x600"].path), str(media["jpeg_exif"].path)
    waited = _json(run(deployment, "--json", "hash", "compute", png, jpg, "--algorithm", "md5"))
    queued = _json(run(deployment, "--json", "hash", "compute", png, "--no-wait"))
    assert isinstance(waited, list) and isinstance(queued, list)
    created = [str(o["job_id"]) for o in [*waited, *queued]]  # pyright: ignore[reportUnknownVariableType]
    assert len(created) == 3 and record.is_file()
    listed = _json(run(deployment, "jobs", "list", "--mine", "--json"))
    assert isinstance(listed, list)
    assert sorted(j["job_id"] for j in listed) == sorted(created)  # pyright: ignore[reportUnknownVariableType]
    assert {j["task_type"] for j in listed} == {"hash"}  # pyright: ignore[reportUnknownVariableType]
    assert {j["input"] for j in listed} == {png, jpg}  # pyright: ignore[reportUnknownVariableType]
    assert {j["status"] for j in listed} <= {"queued", "processing", "completed"}  # pyright: ignore[reportUnknownVariableType]
    text = run(deployment, "jobs", "list", "--mine")
    assert text.exit_code == 0 and "3 job(s) created here" in text.stdout
    assert all(job_id in text.stdout for job_id in created)

    cleaned = _json(run(deployment, "jobs", "clean", "--mine", "--json"))
    assert isinstance(cleaned, dict)
    assert sorted(cleaned["deleted"]) == sorted(created) and cleaned["failed"] == {}  # pyright: ignore[reportUnknownArgumentType]
    with ComputeClient(deployment.server_url, mqtt_url="off") as client:
        for job_id in created:
            with pytest.raises(JobNotFoundError):
                client.get_job(job_id)
    assert _json(run(deployment, "jobs", "list", "--mine", "--json")) == []
    again = run(deployment, "jobs", "clean", "--mine")
    assert again.exit_code == 0 and "deleted 0 job(s)" in again.stdout


def test_a_job_deleted_elsewhere_is_listed_once_as_gone(deployment: Deployment, media: MediaCatalogue) -> None:
    done = _json(run(deployment, "--json", "hash", "compute", str(media["png_800x600"].path)))
    assert isinstance(done, list)
    job_id = str(done[0]["job_id"])  # pyright: ignore[reportUnknownArgumentType]
    with ComputeClient(deployment.server_url, mqtt_url="off") as client:
        client.delete_job(job_id)
    listed = _json(run(deployment, "jobs", "list", "--json"))
    assert listed == [{"job_id": job_id, "task_type": "hash", "status": "gone", "input": str(media["png_800x600"].path),
                       "created": pytest.approx(time.time(), abs=600)}]  # fmt: skip
    assert _json(run(deployment, "jobs", "list", "--json")) == []


def test_job_delete_updates_the_record(deployment: Deployment, media: MediaCatalogue) -> None:
    queued = _json(run(deployment, "--json", "hash", "compute", str(media["png_800x600"].path), "--no-wait"))
    assert isinstance(queued, list)
    job_id = str(queued[0]["job_id"])  # pyright: ignore[reportUnknownArgumentType]
    assert [j.job_id for j in JobRecord(deployment.server_url).outstanding()] == [job_id]
    assert run(deployment, "job", "delete", job_id).exit_code == 0
    assert JobRecord(deployment.server_url).outstanding() == []


def test_usage_counts_the_servers_jobs_and_mine(deployment: Deployment, media: MediaCatalogue) -> None:
    _json(run(deployment, "--json", "hash", "compute", str(media["png_800x600"].path)))
    usage = _json(run(deployment, "jobs", "usage", "--json"))
    assert isinstance(usage, dict)
    with ComputeClient(deployment.server_url, mqtt_url="off") as client:
        size = client.get_storage_size()
    assert usage["job_count"] >= 1 and usage["total_size"] > 0 and usage["mine"] == 1  # pyright: ignore[reportOperatorIssue]
    assert (usage["server_url"], usage["record"]) == (deployment.server_url, str(default_record_path()))
    assert abs(usage["job_count"] - size.job_count) <= 2  # pyright: ignore[reportOperatorIssue] # others' jobs
    text = run(deployment, "jobs", "usage")
    assert text.exit_code == 0 and "1 created by cl-client on this machine" in text.stdout, text.output
    run(deployment, "jobs", "clean", "--mine")


def test_clean_older_than_deletes_only_old_jobs(media: MediaCatalogue) -> None:
    """A deployment of its own (cleaning by age touches every job): one job backdated 10 days, one new."""
    with Deployment(workers=1, tasks=["hash"]) as dep:
        old, new = (
            _json(run(dep, "--json", "hash", "compute", str(media["png_800x600"].path), "--no-wait")) for _ in range(2)
        )
        old_id = str(old[0]["job_id"])  # pyright: ignore[reportIndexIssue, reportUnknownArgumentType]
        new_id = str(new[0]["job_id"])  # pyright: ignore[reportIndexIssue, reportUnknownArgumentType]
        ten_days_ago = int((time.time() - 10 * 86400) * 1000)
        with sqlite3.connect(dep.data_dir / "compute.db") as db:  # the set-up: age a job on the server
            db.execute("UPDATE jobs SET created_at = ? WHERE job_id = ?", (ten_days_ago, old_id))
        res = run(dep, "jobs", "clean", "--older-than", "7d", "--json")
        out = _json(res)
        assert isinstance(out, dict)
        assert (out["older_than_days"], out["deleted_count"]) == (7, 1)
        assert out["freed_space"] > 0  # pyright: ignore[reportOperatorIssue]
        with ComputeClient(dep.server_url, mqtt_url="off") as client:
            with pytest.raises(JobNotFoundError):
                client.get_job(old_id)
            assert client.get_job(new_id).job_id == new_id
        text = run(dep, "jobs", "clean", "--older-than", "7")
        assert text.exit_code == 0 and "deleted 0 job(s) older than 7 day(s)" in text.stdout, text.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "clean"], "say what to clean: --mine"),
        (["jobs", "clean", "--older-than", "7x"], "is not an age in whole days"),
        (["jobs", "clean", "--older-than", "-1d"], "is not an age in whole days"),
    ],
)
def test_bad_clean_arguments_are_usage_errors(args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["--server", "http://127.0.0.1:9", *args], obj=CliState())
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output


def test_ages_and_sizes() -> None:
    assert [parse_age(t) for t in ("7d", "7", " 30 days", "1 day", "0d")] == [7, 7, 30, 1, 0]
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 GiB",
    ]  # fmt: skip


def test_the_record_is_kept_per_server_and_survives_a_bad_line(record: Path) -> None:
    a, b = JobRecord("http://a:8002/"), JobRecord("http://b:8002")
    a.created("j1", "hash", "x.png")
    b.created("j1", "exif", "y.jpg")
    with record.open("a") as f:
        f.write("not json\n[1]\n")
    a.created("j2", "hash", "z.png")
    a.deleted(["j1"])
    assert [j.job_id for j in a.outstanding()] == ["j2"]
    assert [(j.job_id, j.task_type) for j in b.outstanding()] == [("j1", "exif")]
