"""Security (PROTOCOL.md §6, §9): a caller must not name server paths or place files outside its job.

Each check is marked ``cl_security``: when it finds the hole the deployment has a *security finding*, never a
tolerated gap (listed first, and the run fails unless the ``--cl-expect-lacks`` file acknowledges it in its
``security:`` section). The probes are harmless (see ``_security``): they read ``/etc/hostname`` only, write only
to names of their own, and delete every job they create. A deployment that refuses a probe with a 4xx passes.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cl_client import ComputeClient, ComputeClientError
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance.protocol._helpers import RawHTTP, raw_http
from pytest_cl.conformance.protocol._security import (
    HARMLESS_INPUT,
    judge_input_path,
    judge_output_path,
    judge_upload_name,
)
from pytest_cl.deployment import DeploymentInfo

pytestmark = pytest.mark.timeout(120)

SERVER_INPUT = "hls_streaming reads a server path the caller names (input_absolute_path)"
SERVER_OUTPUT = "hls_streaming writes to a server path the caller names (output_absolute_path)"
UPLOAD_ESCAPE = "uploads written outside the job's folder (a file name with '../' leaves input/)"
SMALL = json.dumps([{"resolution": 144, "bitrate": 200}])


@pytest.fixture
def http(request: pytest.FixtureRequest, cl_deployment: DeploymentInfo) -> Iterator[RawHTTP]:
    with raw_http(request.config, cl_deployment) as client:
        yield client


def _created(response_status: int, body: object) -> str | None:
    if response_status != 200 or not isinstance(body, dict):
        return None
    job_id = body.get("job_id")  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
    return str(job_id) if job_id else None  # pyright: ignore[reportUnknownArgumentType]


def _record(client: ComputeClient, job_id: str | None, task: str) -> dict[str, object] | None:
    if job_id is None:
        return None
    try:
        return client.wait_for_job(job_id, 60, task).model_dump()
    except ComputeClientError:
        return None


def _json(response_text: str) -> object:
    try:
        return json.loads(response_text)
    except ValueError:
        return None


@pytest.mark.cl_requires("hls_streaming")
@pytest.mark.cl_security(SERVER_INPUT)
def test_hls_refuses_a_server_input_path(compute_client: ComputeClient, http: RawHTTP) -> None:
    """``input_absolute_path=/etc/hostname`` without a file: refused (4xx). A deployment that accepts it lets any
    caller make the server read its files."""
    response = http.post_job(
        "hls_streaming", file=None, fields={"input_absolute_path": HARMLESS_INPUT, "variants": SMALL}
    )
    job_id = _created(response.status_code, _json(response.text))
    try:
        finding = judge_input_path(response.status_code, job_id, _record(compute_client, job_id, "hls_streaming"))
    finally:
        if job_id is not None:
            http.delete(f"/jobs/{job_id}")
    assert finding is None, finding


@pytest.mark.cl_requires("hls_streaming")
@pytest.mark.cl_security(SERVER_OUTPUT)
def test_hls_ignores_or_refuses_a_server_output_path(
    compute_client: ComputeClient, http: RawHTTP, cl_media: MediaCatalogue
) -> None:
    """``output_absolute_path=/tmp/cl-probe-<uuid>`` (a fresh directory of the check's own), sent twice: with a
    video, and without a file beside ``input_absolute_path=/etc/hostname`` (upstream's February service ignores
    the path fields when a file is uploaded, and honours them without one). Each must be refused (4xx) or ignored
    (the playlists stay in the job's folder). A deployment that writes there lets any caller make the server write
    files where it names."""
    item = cl_media["video_720p_3s_silent"]
    probes: list[tuple[tuple[str, bytes] | None, dict[str, str]]] = [
        ((item.path.name, item.read_bytes()), {}),
        (None, {"input_absolute_path": HARMLESS_INPUT}),
    ]
    findings: list[str] = []
    for upload, extra in probes:
        probe_dir = f"/tmp/cl-probe-{uuid.uuid4()}"
        response = http.post_job(
            "hls_streaming", file=upload, fields={**extra, "output_absolute_path": probe_dir, "variants": SMALL}
        )
        job_id = _created(response.status_code, _json(response.text))
        try:
            record = _record(compute_client, job_id, "hls_streaming")
            written = Path(probe_dir).exists()
            finding = judge_output_path(response.status_code, job_id, record, probe_dir, written)
        finally:
            if job_id is not None:
                http.delete(f"/jobs/{job_id}")
            shutil.rmtree(probe_dir, ignore_errors=True)  # our own fresh name: only what the deployment wrote there
        if finding is not None:
            how = "with a video" if upload is not None else f"without a file, input_absolute_path={HARMLESS_INPUT}"
            findings.append(f"{how}: {finding}")
    assert not findings, "; ".join(findings)


@pytest.mark.cl_requires("hash")
@pytest.mark.cl_security(UPLOAD_ESCAPE)
def test_upload_names_cannot_leave_the_input_folder(compute_client: ComputeClient, http: RawHTTP) -> None:
    """An upload named ``../../cl-probe-<uuid>.jpg``: refused (4xx) or stored inside ``input/``
    (``params.input_path`` stays there). A path that leaves ``input/`` means the file was written outside the job."""
    sent = f"../../cl-probe-{uuid.uuid4()}.jpg"
    response = http.post_job("hash", file=(sent, b"cl probe"), fields={"algorithm": "md5"})
    job_id = _created(response.status_code, _json(response.text))
    try:
        record = _record(compute_client, job_id, "hash")
        params = record.get("params") if record is not None else None
        input_path = params.get("input_path") if isinstance(params, dict) else None  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
        finding = judge_upload_name(sent, response.status_code, job_id, input_path)
    finally:
        if job_id is not None:
            http.delete(f"/jobs/{job_id}")
    assert finding is None, finding
