"""Uploads and storage (PROTOCOL.md §2-§3): awkward file names survive, upload paths cannot escape the job,
the admin storage routes count what was uploaded.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator

import pytest

from cl_client import ComputeClient, PermissionDeniedError
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance.protocol._helpers import RawHTTP, raw_http
from pytest_cl.deployment import DeploymentInfo

pytestmark = [pytest.mark.cl_requires("hash"), pytest.mark.timeout(120)]


@pytest.fixture
def http(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[RawHTTP]:
    with raw_http(request.config, cl_deployment) as client:
        yield client


#: media name -> the basenames a deployment may store it under (as sent, or with ``#?`` made safe)
NAMES = {
    "name_unicode": re.compile(r"café 画像\.jpg"),
    "name_spaces": re.compile(r"name with spaces\.jpg"),
    "name_hash_question": re.compile(r"hash[#_]and[?_]query\.jpg"),
}


@pytest.mark.parametrize("name", list(NAMES))
def test_awkward_upload_names_survive_and_round_trip(
    any_client: ComputeClient, cl_media: MediaCatalogue, name: str
) -> None:
    """Unicode, spaces and ``#?`` in a file name: ``params.input_path`` is ``input/<that name>`` (``#``/``?``
    may be made safe), the input downloads back byte for byte through that path, and the md5 is right."""
    item = cl_media[name]
    job = any_client.submit("hash", item.path, {"algorithm": "md5"})
    record = job.result(60)
    input_path = record.params["input_path"]
    assert isinstance(input_path, str) and input_path.startswith("input/"), record.params
    stored = unicodedata.normalize("NFC", input_path.removeprefix("input/"))
    assert NAMES[name].fullmatch(stored), f"{item.path.name!r} stored as {stored!r}"
    data = any_client.read_job_file(job.job_id, input_path)
    assert hashlib.sha256(data).hexdigest() == item.sha256
    output = any_client.read_job_file(job.job_id, "output/hash.json")
    assert hashlib.md5(item.read_bytes()).hexdigest().encode() in output


@pytest.mark.cl_needs_fix("upload names sanitised to a basename (upstream writes input/<client filename> as sent)")
@pytest.mark.parametrize("sent", ["../../escape.jpg", "/tmp/abs.jpg", "a/b/c/nested.jpg", "..\\win\\back.jpg"])
def test_upload_names_with_paths_are_reduced_to_a_basename(
    compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue, sent: str
) -> None:
    """A filename carrying directories is stored as its last component inside ``input/`` (never outside the job
    directory), and that file holds the upload."""
    data = cl_media["name_spaces"].read_bytes()
    response = http.post_job("hash", file=(sent, data), fields={"algorithm": "md5"})
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    try:
        record = compute_client.wait_for_job(job_id, 60, "hash")
        input_path = record.params["input_path"]
        expected = re.split(r"[/\\]", sent)[-1]
        assert input_path == f"input/{expected}", (sent, input_path)
        assert compute_client.read_job_file(job_id, input_path) == data
    finally:
        http.delete(f"/jobs/{job_id}")


def test_storage_size_counts_our_job(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """``/admin/jobs/storage/size``: ``job_count`` ≥ 1 and ``total_size`` ≥ our upload while our job exists."""
    item = cl_media["jpeg_6000x4000"]
    job = compute_client.submit("hash", item.path, {"algorithm": "md5"})
    job.result(60)
    try:
        info = compute_client.get_storage_size()
    except PermissionDeniedError:
        pytest.skip("the configured token is not an admin: /admin/jobs/storage/size answers 403")
    assert info.job_count >= 1
    assert info.total_size >= item.size


@pytest.mark.cl_destructive
def test_cleanup_of_old_jobs_keeps_recent_ones(
    compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue
) -> None:
    """``DELETE /admin/jobs/cleanup?days=36500`` deletes nothing younger than a century: our fresh job stays;
    a negative ``days`` is a 422."""
    job = compute_client.submit("hash", cl_media["name_spaces"].path, {"algorithm": "md5"})
    job.result(60)
    response = http.delete("/admin/jobs/cleanup", params={"days": 36500})
    if response.status_code == 403:
        pytest.skip("the configured token is not an admin: /admin/jobs/cleanup answers 403")
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["deleted_count"], int) and isinstance(body["freed_space"], int)
    assert body["deleted_count"] >= 0 and body["freed_space"] >= 0
    assert compute_client.get_job(job.job_id).is_completed
    assert http.delete("/admin/jobs/cleanup", params={"days": -1}).status_code == 422
