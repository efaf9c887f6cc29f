"""Job routes (PROTOCOL.md §2-§4): 404s, deletion, validation (422), the job record, priority scheduling.

Requests that the client would refuse before sending are sent with plain httpx (``_helpers.RawHTTP``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Iterator

import pytest

from cl_client import ComputeClient, JobNotFoundError
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance.protocol._helpers import RawHTTP, detail_locs, is_uuid4, now_ms, raw_http
from pytest_cl.deployment import DeploymentInfo

pytestmark = [pytest.mark.cl_requires("hash"), pytest.mark.timeout(120)]

#: Every field of PROTOCOL.md §4's JobResponse and the JSON types it may have.
JOB_FIELDS: dict[str, tuple[type, ...]] = {
    "job_id": (str,),
    "task_type": (str,),
    "status": (str,),
    "progress": (int,),
    "params": (dict,),
    "task_output": (dict, type(None)),
    "error_message": (str, type(None)),
    "priority": (int,),
    "created_at": (int,),
    "updated_at": (int, type(None)),
    "started_at": (int, type(None)),
    "completed_at": (int, type(None)),
}
#: Clock skew allowed between the test machine and the deployment, in ms.
SKEW_MS = 60_000


@pytest.fixture
def http(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[RawHTTP]:
    with raw_http(request.config, cl_deployment) as client:
        yield client


def _hash_job(client: ComputeClient, cl_media: MediaCatalogue, name: str = "name_spaces", priority: int = 5) -> str:
    job = client.submit("hash", cl_media[name].path, {"algorithm": "md5"}, priority)
    job.result(60)
    return job.job_id


# -- 404 ---------------------------------------------------------------------------------------------------
def test_unknown_job_is_404_on_get_delete_and_download(http: RawHTTP) -> None:
    """A job id the server never made: GET, DELETE and a file download all answer 404 (GET says which job)."""
    job_id = str(uuid.uuid4())
    got = http.get(f"/jobs/{job_id}")
    assert got.status_code == 404, got.text
    assert got.json() == {"detail": f"Job {job_id} not found"}
    assert http.delete(f"/jobs/{job_id}").status_code == 404
    assert http.get(f"/jobs/{job_id}/files/output/hash.json").status_code == 404
    # not even a well-formed id
    assert http.get("/jobs/not-a-job-id").status_code == 404


def test_deleted_job_is_404_everywhere_and_a_second_delete_is_404(
    compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue
) -> None:
    """DELETE answers 204 with an empty body; afterwards GET, download and a second DELETE answer 404."""
    job_id = _hash_job(compute_client, cl_media)
    assert http.get(f"/jobs/{job_id}/files/output/hash.json").status_code == 200
    first = http.delete(f"/jobs/{job_id}")
    assert first.status_code == 204, first.text
    assert first.content == b""
    assert http.get(f"/jobs/{job_id}").status_code == 404
    assert http.get(f"/jobs/{job_id}/files/output/hash.json").status_code == 404
    assert http.get(f"/jobs/{job_id}/files/input/name with spaces.jpg").status_code == 404
    second = http.delete(f"/jobs/{job_id}")
    assert second.status_code == 404, second.text
    # the client maps the same answers to JobNotFoundError
    with pytest.raises(JobNotFoundError):
        compute_client.get_job(job_id)
    with pytest.raises(JobNotFoundError):
        compute_client.delete_job(job_id)


# -- 422 ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("priority", ["-1", "11", "x", "5.5", "99999999999999999999"])
def test_bad_priority_is_422_naming_priority(http: RawHTTP, cl_media: MediaCatalogue, priority: str) -> None:
    """``priority`` outside the integers 0-10 is a FastAPI 422 whose error list names ``priority``; no job."""
    item = cl_media["name_spaces"]
    response = http.post_job("hash", file=(item.path.name, item.read_bytes()), fields={"priority": priority})
    assert response.status_code == 422, response.text
    assert ["body", "priority"] in detail_locs(response)
    assert "job_id" not in response.json()


@pytest.mark.parametrize("priority", ["0", "10"])
def test_priority_bounds_are_accepted_and_echoed(
    compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue, priority: str
) -> None:
    """The bounds 0 and 10 are valid priorities; the job record echoes them."""
    item = cl_media["name_spaces"]
    response = http.post_job(
        "hash", file=(item.path.name, item.read_bytes()), fields={"priority": priority, "algorithm": "md5"}
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    try:
        record = compute_client.wait_for_job(job_id, 60, "hash")
        assert record.priority == int(priority)
    finally:
        http.delete(f"/jobs/{job_id}")


def test_missing_file_is_422_naming_file(http: RawHTTP) -> None:
    """A multipart request without a ``file`` part is a 422 naming ``file`` (not a 500, not a job)."""
    response = http.post_job("hash", file=None, fields={"priority": "5", "algorithm": "md5"})
    assert response.status_code == 422, response.text
    assert ["body", "file"] in detail_locs(response)


def test_file_sent_as_plain_field_is_422(http: RawHTTP) -> None:
    """A ``file`` part without a filename is a string field, not an upload: 422 naming ``file``."""
    response = http.post_job("hash", file=None, fields={"file": "not an upload"})
    assert response.status_code == 422, response.text
    assert ["body", "file"] in detail_locs(response)


def test_unknown_task_type_is_refused(http: RawHTTP, cl_media: MediaCatalogue) -> None:
    """``POST /jobs/<no such plugin>`` creates nothing: a 4xx (404 or 405), never 200 or 5xx."""
    item = cl_media["name_spaces"]
    response = http.post_job("no_such_plugin_xyz", file=(item.path.name, item.read_bytes()))
    assert response.status_code in (404, 405), response.text


# -- the job record ----------------------------------------------------------------------------------------
def test_created_response_and_job_record_are_consistent(
    compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue
) -> None:
    """POST answers 200 {job_id (UUID4), status queued, task_type}; the finished record has every field with
    its type, echoes priority and params (+ input_path, output_path), and its timestamps are ordered ms near now.
    """
    item = cl_media["jpeg_exif"]
    before = now_ms()
    response = http.post_job(
        "hash", file=(item.path.name, item.read_bytes()), fields={"algorithm": "md5", "priority": "7"}
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) >= {"job_id", "status", "task_type"}
    assert created["status"] == "queued"
    assert created["task_type"] == "hash"
    assert is_uuid4(created["job_id"]), created
    job_id = created["job_id"]
    try:
        first = http.get(f"/jobs/{job_id}").json()
        assert first["status"] in ("queued", "processing", "in_progress", "completed")
        compute_client.wait_for_job(job_id, 60, "hash")
        after = now_ms()
        record = http.get(f"/jobs/{job_id}").json()
        for name, types in JOB_FIELDS.items():
            assert name in record, f"job record lacks {name!r}: {record}"
            assert isinstance(record[name], types) and not isinstance(record[name], bool), (name, record[name])
        assert record["job_id"] == job_id
        assert record["task_type"] == "hash"
        assert record["status"] == "completed"
        assert record["progress"] == 100
        assert record["error_message"] is None
        assert record["priority"] == 7
        params = record["params"]
        assert params["algorithm"] == "md5"
        assert params["input_path"] == f"input/{item.path.name}"
        assert params["output_path"] == "output/hash.json"
        assert record["created_at"] == first["created_at"], "created_at changed while the job ran"
        created_at, started_at, completed_at = record["created_at"], record["started_at"], record["completed_at"]
        assert started_at is not None and completed_at is not None, record
        assert created_at <= started_at <= completed_at, record
        assert before - SKEW_MS <= created_at <= after + SKEW_MS, (before, record, after)
        assert completed_at - created_at <= after - before + 1_000, "timestamps are not milliseconds"
        # the output path really is the output: the md5 of the uploaded bytes
        out = http.get(f"/jobs/{job_id}/files/{params['output_path']}")
        assert out.status_code == 200
        assert json.loads(out.content)["hash_value"] == hashlib.md5(item.read_bytes()).hexdigest()
    finally:
        http.delete(f"/jobs/{job_id}")


@pytest.mark.cl_needs_fix("a real updated_at (upstream echoes created_at)")
def test_updated_at_follows_the_job(compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue) -> None:
    """``updated_at`` is the time of the last change: after completion it is ≥ completed_at (> created_at)."""
    job_id = _hash_job(compute_client, cl_media, "jpeg_1920x1080")
    record = http.get(f"/jobs/{job_id}").json()
    assert record["updated_at"] is not None, record
    assert record["updated_at"] >= record["completed_at"] > record["created_at"], record


# -- priority ----------------------------------------------------------------------------------------------
@pytest.mark.cl_needs_fix("priority scheduling (upstream runs jobs FIFO whatever their priority)")
def test_higher_priority_jobs_start_first_fifo_within_a_priority(
    compute_client: ComputeClient, cl_deployment: DeploymentInfo, cl_media: MediaCatalogue
) -> None:
    """With every worker busy and low-priority (0) jobs queued, priority-10 jobs submitted after them start
    before the last low one; the low ones start in submission order (FIFO within a priority)."""
    slow = cl_media["jpeg_6000x4000"].path  # ~0.5 s of pixel hashing per job
    quick = cl_media["name_spaces"].path
    n_low = 2 * max(1, cl_deployment.num_workers) + 2
    lows = [compute_client.submit("hash", slow, {"algorithm": "sha512"}, 0) for _ in range(n_low)]
    highs = [compute_client.submit("hash", quick, {"algorithm": "md5"}, 10) for _ in range(2)]
    low_records = [j.result(90) for j in lows]
    high_records = [j.result(90) for j in highs]
    low_starts = [r.started_at or 0 for r in low_records]
    last_low = max(low_starts)
    for r in high_records:
        assert r.started_at is not None and r.started_at < last_low, (
            f"priority-10 job started at {r.started_at}, after every priority-0 job (last started {last_low}): FIFO"
        )
    # FIFO among equals; 50 ms of slack for two workers claiming at the same moment
    for earlier, later in itertools.pairwise(low_starts):
        assert later >= earlier - 50, f"priority-0 jobs did not start in submission order: {low_starts}"


def test_job_ids_are_unique_and_queued_record_exists_at_once(
    compute_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """Five quick submissions get five distinct ids, and each is readable by GET right after its POST."""
    jobs = [compute_client.submit("hash", cl_media["name_spaces"].path, {"algorithm": "md5"}) for _ in range(5)]
    assert len({j.job_id for j in jobs}) == 5
    for job in jobs:
        record = compute_client.get_job(job.job_id)
        assert record.job_id == job.job_id and record.task_type == "hash"
    for job in jobs:
        assert job.result(60).is_completed
