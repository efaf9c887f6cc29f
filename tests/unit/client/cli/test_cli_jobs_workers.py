"""``cl-client job download`` into a new folder, ``job get`` timestamps, ``workers`` without a broker: against
the real reference deployment (click's CliRunner in-process)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cl_client._cli_common import CliState
from cl_client.cli import cli
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue
from tests.unit.ports import unassigned_port

CL_ENV = ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_TOKEN", "CL_TIMEOUT", "CL_USERNAME")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CL_ENV:
        monkeypatch.delenv(name, raising=False)


def run(dep: Deployment, *args: str, mqtt: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--server", dep.server_url, "--mqtt", mqtt or dep.mqtt_url, *args], obj=CliState())


@pytest.fixture
def thumbnail_job(deployment: Deployment, media: MediaCatalogue) -> str:
    res = run(deployment, "--json", "media-thumbnail", "generate", str(media["png_800x600"].path), "-w", "40",
              "--no-wait")  # fmt: skip
    assert res.exit_code == 0, res.output
    job_id: str = json.loads(res.stdout)[0]["job_id"]
    res = run(deployment, "job", "wait", job_id, "-t", "120")
    assert res.exit_code == 0, res.output
    return job_id


def test_job_download_into_a_new_folder_with_a_trailing_slash(
    deployment: Deployment, thumbnail_job: str, tmp_path: Path
) -> None:
    dest = tmp_path / "new" / "thumbs"
    res = run(deployment, "job", "download", thumbnail_job, "output/thumbnail.jpg", f"{dest}/")
    assert res.exit_code == 0, res.output
    assert dest.is_dir(), "a folder is created, not a file named like it"
    assert (dest / "thumbnail.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert res.stdout.strip() == str(dest / "thumbnail.jpg")
    # without the slash a new name is a file name, as in the library
    res = run(deployment, "job", "download", thumbnail_job, "output/thumbnail.jpg", str(tmp_path / "t.jpg"))
    assert res.exit_code == 0 and (tmp_path / "t.jpg").is_file()
    run(deployment, "job", "delete", thumbnail_job)


def test_job_get_shows_readable_timestamps(deployment: Deployment, thumbnail_job: str) -> None:
    record = json.loads(run(deployment, "job", "get", thumbnail_job, "--json").stdout)
    assert isinstance(record["created_at"], int) and isinstance(record["completed_at"], int)  # raw in --json
    res = run(deployment, "job", "get", thumbnail_job)
    assert res.exit_code == 0, res.output
    for key in ("created_at", "completed_at"):
        local = datetime.fromtimestamp(record[key] / 1000, tz=UTC).astimezone()
        line = next(line for line in res.stdout.splitlines() if line.startswith(key))
        assert local.isoformat(timespec="milliseconds") in line and "local time" in line, line
        assert str(record[key]) not in line
    run(deployment, "job", "delete", thumbnail_job)


def test_workers_with_an_unreachable_broker_fails_clearly(deployment: Deployment) -> None:
    dead = f"mqtt://127.0.0.1:{unassigned_port()}"
    for args in (["workers"], ["workers", "--json"], ["--json", "workers"]):
        res = run(deployment, *args, mqtt=dead)
        assert res.exit_code == 3, (args, res.output)
        assert res.stdout == "", "no table and no JSON that would read as 'no workers'"
        assert f"MQTT broker {dead} is not reachable" in res.stderr
        assert "cl-client capabilities" in res.stderr
        assert "0 live worker" not in res.output


def test_timestamp_and_lost_broker_rendering() -> None:
    from rich.console import Console

    from cl_client._cli_jobs import _workers_table, format_timestamp  # pyright: ignore[reportPrivateUsage]

    assert format_timestamp(10**20) == str(10**20)  # out of range for a date: the raw value
    assert format_timestamp(0).startswith(datetime.fromtimestamp(0, tz=UTC).astimezone().strftime("%Y-%m-%dT"))
    console = Console(width=200, record=True)
    console.print(_workers_table({}, "mqtt://broker.example:1883"))
    text = " ".join(console.export_text().split())  # the title wraps to the table's width
    assert "MQTT broker mqtt://broker.example:1883 unreachable, reconnecting: 0 worker(s) last seen" in text
