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
from pytest_cl.conformance._checks import expect_param, expect_status, get_field
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
    where = f"hash job {job.job_id} of {item.path.name!r}"
    input_path = get_field(record.params, "input_path", where=f"{where}: params")
    assert isinstance(input_path, str) and input_path.startswith("input/"), (
        f"{where}: params.input_path is {input_path!r}, expected 'input/<file name>'"
    )
    stored = unicodedata.normalize("NFC", input_path.removeprefix("input/"))
    assert NAMES[name].fullmatch(stored), f"{where}: {item.path.name!r} stored as {stored!r}"
    data = any_client.read_job_file(job.job_id, input_path)
    assert hashlib.sha256(data).hexdigest() == item.sha256, (
        f"{where}: {input_path} downloads as {len(data)} bytes that differ from the {item.size} bytes uploaded"
    )
    output = any_client.read_job_file(job.job_id, "output/hash.json")
    md5 = hashlib.md5(item.read_bytes()).hexdigest()
    assert md5.encode() in output, f"{where}: output/hash.json does not carry the upload's MD5 {md5}: {output[:200]!r}"


@pytest.mark.cl_needs_fix("upload names sanitised to a basename (upstream writes input/<client filename> as sent)")
@pytest.mark.parametrize("sent", ["../../escape.jpg", "/tmp/abs.jpg", "a/b/c/nested.jpg", "..\\win\\back.jpg"])
def test_upload_names_with_paths_are_reduced_to_a_basename(
    compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue, sent: str
) -> None:
    """A filename carrying directories is stored as its last component inside ``input/`` (never outside the job
    directory), and that file holds the upload."""
    data = cl_media["name_spaces"].read_bytes()
    response = http.post_job("hash", file=(sent, data), fields={"algorithm": "md5"})
    expect_status(response, 200, what=f"POST /jobs/hash with the file name {sent!r}")
    job_id = str(get_field(response.json(), "job_id", where=f"the answer to POST /jobs/hash (file name {sent!r})"))
    try:
        record = compute_client.wait_for_job(job_id, 60, "hash")
        expected = re.split(r"[/\\]", sent)[-1]
        input_path = expect_param(record, "input_path", f"input/{expected}")
        assert compute_client.read_job_file(job_id, str(input_path)) == data, (
            f"hash job {job_id}: {input_path} does not hold the uploaded bytes (file name sent {sent!r})"
        )
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
    assert info.job_count >= 1, (
        f"GET /admin/jobs/storage/size: job_count {info.job_count} while hash job {job.job_id} exists"
    )
    assert info.total_size >= item.size, (
        f"GET /admin/jobs/storage/size: total_size {info.total_size} bytes, less than the {item.size} bytes uploaded"
        f" to hash job {job.job_id}"
    )


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
    expect_status(response, 200, what="DELETE /admin/jobs/cleanup?days=36500")
    body = response.json()
    where = "the answer to DELETE /admin/jobs/cleanup?days=36500"
    deleted, freed = get_field(body, "deleted_count", where=where), get_field(body, "freed_space", where=where)
    assert isinstance(deleted, int) and isinstance(freed, int), (
        f"{where}: expected integer deleted_count and freed_space, got {deleted!r} and {freed!r}"
    )
    assert deleted >= 0 and freed >= 0, f"{where}: negative counts deleted_count {deleted}, freed_space {freed}"
    after = compute_client.get_job(job.job_id)
    assert after.is_completed, (
        f"hash job {job.job_id} (seconds old) is {after.status!r} after a cleanup of jobs older than 36500 days"
    )
    expect_status(
        http.delete("/admin/jobs/cleanup", params={"days": -1}), 422, what="DELETE /admin/jobs/cleanup?days=-1"
    )
