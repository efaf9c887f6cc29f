"""File downloads (PROTOCOL.md §2): real files round-trip, everything outside the job directory is refused.

Traversal attempts are sent byte for byte (``RawHTTP.raw_get`` through httpcore), so neither httpx's
dot-segment removal nor the client's quoting changes them. The target of each attempt is a real file: the
result of *another* job, so a deployment that follows the path would answer 200 with that job's bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PIL import Image

from cl_client import ComputeClient
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance._checks import expect, expect_field, expect_status
from pytest_cl.conformance.protocol._helpers import RawHTTP, raw_http
from pytest_cl.deployment import DeploymentInfo

pytestmark = [pytest.mark.cl_requires("hash"), pytest.mark.timeout(120)]

REFUSED = (400, 403, 404)


@pytest.fixture
def http(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[RawHTTP]:
    with raw_http(request.config, cl_deployment) as client:
        yield client


@dataclass(frozen=True)
class TwoJobs:
    """Two finished md5 jobs: traversal attempts start in ``a`` and aim at ``b``'s result."""

    a: str
    b: str
    b_result: bytes


@pytest.fixture
def two_jobs(compute_client: ComputeClient, cl_media: MediaCatalogue, http: RawHTTP) -> TwoJobs:
    a = compute_client.submit("hash", cl_media["name_spaces"].path, {"algorithm": "md5"})
    b = compute_client.submit("hash", cl_media["png_pixels_twin"].path, {"algorithm": "md5"})
    a.result(60)
    b.result(60)
    got = http.get(f"/jobs/{b.job_id}/files/output/hash.json")
    expect_status(got, 200, what=f"hash job {b.job_id}: download of output/hash.json (the traversal target)")
    return TwoJobs(a.job_id, b.job_id, got.content)


def test_result_and_input_files_round_trip(two_jobs: TwoJobs, http: RawHTTP, cl_media: MediaCatalogue) -> None:
    """``output/hash.json`` holds the md5 of the upload; ``input/<name>`` gives the uploaded bytes back."""
    twin = cl_media["png_pixels_twin"]
    expect_field(
        json.loads(two_jobs.b_result),
        "hash_value",
        hashlib.md5(twin.read_bytes()).hexdigest(),
        where=f"hash job {two_jobs.b}: output/hash.json",
        meaning="the MD5 of the uploaded bytes",
    )
    got = http.get(f"/jobs/{two_jobs.b}/files/input/{twin.path.name}")
    expect_status(got, 200, what=f"hash job {two_jobs.b}: download of input/{twin.path.name}")
    assert hashlib.sha256(got.content).hexdigest() == twin.sha256, (
        f"hash job {two_jobs.b}: input/{twin.path.name} downloads as {len(got.content)} bytes that differ from the"
        f" {twin.size} bytes uploaded"
    )


def _attempts(a: str, b: str) -> dict[str, str]:
    """Request targets (sent verbatim) that try to leave job ``a``'s directory for job ``b``'s result."""
    base = f"/jobs/{a}/files"
    return {
        "dotdot": f"{base}/../{b}/output/hash.json",
        "dotdot_inside_output": f"{base}/output/../../{b}/output/hash.json",
        "percent_dotdot": f"{base}/%2e%2e/{b}/output/hash.json",
        "percent_dotdot_upper": f"{base}/%2E%2E/{b}/output/hash.json",
        "percent_slash": f"{base}/..%2f{b}%2foutput%2fhash.json",
        "double_encoded": f"{base}/%252e%252e/{b}/output/hash.json",
        "backslash": f"{base}/..%5c{b}%5coutput%5chash.json",
        "absolute": f"{base}//etc/passwd",
        "absolute_encoded": f"{base}/%2fetc%2fpasswd",
        "deep_dotdot": f"{base}/output/../../../../../../../../etc/passwd",
        "null_byte": f"{base}/output/hash.json%00.png",
    }


@pytest.mark.parametrize("attempt", list(_attempts("A", "B")))
def test_traversal_attempts_are_refused(two_jobs: TwoJobs, http: RawHTTP, attempt: str) -> None:
    """Paths leaving the job directory (``..``, percent-encoded, absolute, backslash, NUL) answer 400/403/404
    and never serve another job's result or a system file."""
    target = _attempts(two_jobs.a, two_jobs.b)[attempt]
    status, body = http.raw_get(target)
    assert status in REFUSED, f"GET {target} ({attempt}) answered {status}, expected 400/403/404: {body[:200]!r}"
    assert two_jobs.b_result not in body, (
        f"GET {target} ({attempt}) served job {two_jobs.b}'s output/hash.json from job {two_jobs.a}'s files"
    )
    assert b"root:" not in body, f"GET {target} ({attempt}) served a system file (/etc/passwd): {body[:200]!r}"


def test_dotdot_to_the_other_job_is_403_as_the_protocol_says(two_jobs: TwoJobs, http: RawHTTP) -> None:
    """A ``..`` path that resolves outside the job directory is the traversal case of §2: 403."""
    target = f"/jobs/{two_jobs.a}/files/output/../../{two_jobs.b}/output/hash.json"
    # a router that removes dot segments first sees /jobs/<b>/output/hash.json: no such route, 404
    expect_status(http.raw_get(target), (403, 404), what=f"GET {target} (a .. out of the job directory)")
    target = f"/jobs/{two_jobs.a}/files/%2e%2e/{two_jobs.b}/output/hash.json"
    expect_status(http.raw_get(target), 403, what=f"GET {target} (an encoded .. out of the job directory)")


def test_dotdot_that_stays_inside_the_job_is_served(two_jobs: TwoJobs, http: RawHTTP) -> None:
    """``output/../output/hash.json`` resolves inside the job directory: an allowed path, 200 with the result."""
    target = f"/jobs/{two_jobs.b}/files/output/%2e%2e/output/hash.json"
    status, body = http.raw_get(target)
    expect_status((status, body), 200, what=f"GET {target} (a .. that stays inside the job)")
    assert body == two_jobs.b_result, (
        f"GET {target} served {body[:200]!r}, not the job's output/hash.json {two_jobs.b_result[:200]!r}"
    )


@pytest.mark.parametrize("path", ["output", "output/", "input", "faces", ""])
def test_directories_are_refused(two_jobs: TwoJobs, http: RawHTTP, path: str) -> None:
    """A directory of the job (or the job directory itself) is not a file: 400 as §2 says (404 if no such
    directory exists on this deployment, e.g. ``faces`` for a hash job upstream)."""
    target = f"/jobs/{two_jobs.a}/files/{path}"
    allowed = (400,) if path.startswith(("output", "input")) else (400, 404)
    expect_status(http.raw_get(target), allowed, what=f"GET {target} (a directory, not a file)")


def test_missing_file_of_existing_job_is_404(two_jobs: TwoJobs, http: RawHTTP) -> None:
    """A file name the job does not have: 404 (the job exists, the file does not)."""
    got = http.get(f"/jobs/{two_jobs.a}/files/output/no_such_file.json")
    expect_status(got, 404, what=f"hash job {two_jobs.a}: download of output/no_such_file.json")
    expect_status(http.get(f"/jobs/{two_jobs.a}"), 200, what=f"GET /jobs/{two_jobs.a} (the job itself exists)")


@pytest.mark.cl_requires("media_thumbnail")
@pytest.mark.cl_needs_fix("real media types on downloads (upstream: application/octet-stream)")
def test_downloads_carry_the_real_media_type(compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue):
    """The thumbnail downloads as ``image/jpeg`` (a JPEG by its bytes), ``hash.json`` as JSON, as attachments."""
    job = compute_client.media_thumbnail.generate(cl_media["name_spaces"].path, width=64, height=64)
    result = job.result(60)
    where = f"media_thumbnail job {job.job_id}: download of {result.output_path}"
    got = http.get(f"/jobs/{job.job_id}/files/{result.output_path}")
    expect_status(got, 200, what=where)
    expect(got.headers.get("content-type", "<none>").split(";")[0], "image/jpeg", f"{where}: Content-Type")
    assert got.content[:3] == b"\xff\xd8\xff", f"{where}: the bytes are not a JPEG (start {got.content[:4]!r})"
    disposition = got.headers.get("content-disposition", "")
    assert disposition.startswith("attachment"), (
        f"{where}: Content-Disposition {disposition!r}, expected 'attachment; …'"
    )
    with Image.open(io.BytesIO(got.content)) as im:
        assert max(im.size) == 64, f"{where}: a 64×64-box thumbnail is {im.size[0]}×{im.size[1]}"
    hashed = compute_client.hash.compute(cl_media["name_spaces"].path, algorithm="md5")
    hashed.result(60)
    meta = http.get(f"/jobs/{hashed.job_id}/files/output/hash.json")
    expect(
        meta.headers.get("content-type", "<none>").split(";")[0],
        "application/json",
        f"hash job {hashed.job_id}: download of output/hash.json: Content-Type",
    )
