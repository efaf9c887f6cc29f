"""hls_streaming's server-path fields (upstream February 2026, PROTOCOL.md §9): typed keyword options on both
clients, ``video`` optional with ``input_absolute_path``, a clear error without either, and both 400 (February)
and 422 (reference deployment, January) for a job without input mapped to ``ValidationError``. Against a MOCK of
February's and January's job route (``upstream_mocks.py``) and the real reference deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cl_client import AsyncComputeClient, ComputeClient, ComputeClientConfig, ConfigurationError, ValidationError
from tests.unit.client.plugins.deployment import shared_deployment
from tests.unit.client.upstream_mocks import FEBRUARY, JANUARY, UpstreamMock

CFG = ComputeClientConfig(retry_backoff_base=0.01, retry_backoff_max=0.05, mqtt_url=None)


@pytest.fixture
def mock(request: pytest.FixtureRequest) -> Iterator[UpstreamMock]:
    server = UpstreamMock(request.param)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("mock", [FEBRUARY], indirect=True)
def test_server_paths_without_a_video(mock: UpstreamMock) -> None:
    """MOCK of February: a form without a file part carries both paths; the job is created."""
    with ComputeClient(mock.url, mqtt_url="off", config=CFG) as client:
        job = client.hls_streaming.generate_manifest(
            input_absolute_path="/srv/videos/in.mp4", output_absolute_path="/srv/hls/out", priority=7
        )
        assert job.status == "queued" and job.params["input_absolute_path"] == "/srv/videos/in.mp4"
    form = mock.forms[-1]
    assert "<file>" not in form
    assert (form["input_absolute_path"], form["output_absolute_path"]) == ("/srv/videos/in.mp4", "/srv/hls/out")
    assert (form["priority"], form["include_original"]) == ("7", "false")


@pytest.mark.parametrize("mock", [FEBRUARY], indirect=True)
async def test_server_paths_async_and_with_a_video(mock: UpstreamMock, tmp_path: Path) -> None:
    """MOCK of February, async client: the same fields; a video given too is uploaded beside them."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    async with AsyncComputeClient(mock.url, mqtt_url="off", config=CFG) as client:
        await client.hls_streaming.generate_manifest(input_absolute_path="C:\\media\\in.mp4")
        await client.hls_streaming.generate_manifest(video, output_absolute_path="/srv/out")
    assert mock.forms[0]["input_absolute_path"] == "C:\\media\\in.mp4" and "<file>" not in mock.forms[0]
    assert mock.forms[1]["<file>"] == "clip.mp4" and mock.forms[1]["output_absolute_path"] == "/srv/out"
    assert "input_absolute_path" not in mock.forms[1]


@pytest.mark.parametrize("mock", [FEBRUARY], indirect=True)
def test_bad_or_missing_input_is_refused_before_sending(mock: UpstreamMock) -> None:
    with ComputeClient(mock.url, mqtt_url="off", config=CFG) as client:
        with pytest.raises(ConfigurationError, match="give a video file to upload, or input_absolute_path"):
            client.hls_streaming.generate_manifest()
        with pytest.raises(ConfigurationError, match="relative path"):
            client.hls_streaming.generate_manifest(input_absolute_path="videos/in.mp4")
        with pytest.raises(ConfigurationError, match="output_absolute_path"):
            client.hls_streaming.generate_manifest(input_absolute_path="/in.mp4", output_absolute_path="")
    assert mock.forms == []


@pytest.mark.parametrize("mock", [FEBRUARY], indirect=True)
def test_february_400_without_input_is_a_validation_error(mock: UpstreamMock) -> None:
    """MOCK of February: no file and no path is a 400 with a string detail, raised as ValidationError."""
    with ComputeClient(mock.url, mqtt_url="off", config=CFG) as client, pytest.raises(ValidationError) as info:
        client.hls_streaming.submit(None, {})
    assert info.value.status_code == 400
    assert info.value.detail == "Either file or input_absolute_path must be provided"
    assert "Either file or input_absolute_path must be provided" in str(info.value)


@pytest.mark.parametrize("mock", [JANUARY], indirect=True)
def test_january_wants_a_file(mock: UpstreamMock) -> None:
    """MOCK of January: the server path is not enough (422, file missing)."""
    with ComputeClient(mock.url, mqtt_url="off", config=CFG) as client, pytest.raises(ValidationError) as info:
        client.hls_streaming.generate_manifest(input_absolute_path="/etc/hostname")
    assert info.value.status_code == 422
    assert ("body.file", "Field required") in info.value.errors


def test_reference_deployment_refuses_a_server_path_with_422(request: pytest.FixtureRequest) -> None:
    """The real reference deployment: a job with a server path and no upload is refused (422, detail kept)."""
    dep = shared_deployment(request)
    with ComputeClient(dep.server_url, mqtt_url="off", config=CFG) as client:
        with pytest.raises(ValidationError) as info:
            client.hls_streaming.generate_manifest(input_absolute_path="/etc/hostname", wait=True, timeout=60)
        assert info.value.status_code == 422 and info.value.errors
        with pytest.raises(ValidationError) as bare:
            client.hls_streaming.submit(None, {})
        assert bare.value.status_code == 422
