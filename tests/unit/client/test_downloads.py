"""Multi-file downloads are all or nothing, and downloaded files get the user's usual permissions.

The scripted server (a real HTTP server) serves job files a correct deployment never produces: playlists with
references outside the job, a face crop that is listed but missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cl_client import ComputeClient, ComputeClientConfig, ComputeClientError, NotFoundError
from cl_client.plugins.face_detection import FaceDetectionResult
from cl_client.plugins.hls_streaming import HlsResult

from .scripted_server import ScriptedServer

CFG = ComputeClientConfig(poll_interval=0.1, poll_max_interval=0.3)

MASTER = (
    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1500000,RESOLUTION=854x480\nadaptive-480p.m3u8\n"
    "#EXT-X-STREAM-INF:BANDWIDTH=3500000,RESOLUTION=1280x720\nadaptive-720p.m3u8\n"
)


def variant(*segments: str) -> bytes:
    body = "".join(f"#EXTINF:2.0,\n{s}\n" for s in segments)
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n{body}#EXT-X-ENDLIST\n".encode()


@pytest.fixture
def client(http_only_server: ScriptedServer) -> Iterator[ComputeClient]:
    with ComputeClient(http_only_server.url, mqtt_url="off", config=CFG) as c:
        yield c


@pytest.fixture
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("input") / "clip.mp4"
    p.write_bytes(b"\x00" * 64)
    return p


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def hls_result(server: ScriptedServer, client: ComputeClient, sample: Path, bad_ref: str | None) -> HlsResult:
    """A completed hls job whose second variant playlist references ``bad_ref`` (when given)."""
    job = client.hls_streaming.generate_manifest(sample)
    jid = job.job_id
    server.set_status(jid, "completed", 100)
    server.jobs[jid]["task_output"] = {"master_playlist": "output/adaptive.m3u8", "variants_generated": 2}
    server.jobs[jid]["params"]["output_path"] = "output"
    server.files[(jid, "output/adaptive.m3u8")] = MASTER.encode()
    server.files[(jid, "output/adaptive-480p.m3u8")] = variant("adaptive-480p-000.ts", "adaptive-480p-001.ts")
    second = ["adaptive-720p-000.ts"] + ([bad_ref] if bad_ref else [])
    server.files[(jid, "output/adaptive-720p.m3u8")] = variant(*second)
    for name in ("480p-000", "480p-001", "720p-000"):
        server.files[(jid, f"output/adaptive-{name}.ts")] = name.encode() * 100
    return job.result(timeout=30)


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("bad_ref", ["../x.ts", "http://other-host.example/x.ts", "/etc/passwd"])
def test_hls_download_with_an_unsafe_reference_leaves_nothing(
    http_only_server: ScriptedServer, client: ComputeClient, sample: Path, tmp_path: Path, bad_ref: str
) -> None:
    result = hls_result(http_only_server, client, sample, bad_ref)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    (existing / "adaptive.m3u8").write_text("an older download")
    with pytest.raises(ComputeClientError, match="unsafe"):
        result.download_stream(existing)
    # the master and the first variant were fetched before the bad reference was seen: none of it is here
    assert listing(existing) == ["adaptive.m3u8", "notes.txt"]
    assert (existing / "adaptive.m3u8").read_text() == "an older download"
    assert (existing / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"
    with pytest.raises(ComputeClientError, match="unsafe"):
        result.download_stream(fresh)
    with pytest.raises(ComputeClientError, match="unsafe"):
        asyncio.run(result.adownload_stream(fresh))
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no staging folder left beside


def test_hls_download_moves_everything_in_with_user_permissions(
    http_only_server: ScriptedServer, client: ComputeClient, sample: Path, tmp_path: Path, umask_022: None
) -> None:
    result = hls_result(http_only_server, client, sample, None)
    dest = tmp_path / "hls"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    written = result.download_stream(dest)
    expected = ["adaptive-480p-000.ts", "adaptive-480p-001.ts", "adaptive-480p.m3u8", "adaptive-720p-000.ts",
                "adaptive-720p.m3u8", "adaptive.m3u8"]  # fmt: skip
    assert sorted(p.relative_to(dest).as_posix() for p in written) == expected
    assert written[0] == dest / "adaptive.m3u8"
    assert listing(dest) == sorted([*expected, "notes.txt"])
    assert (dest / "adaptive-480p-001.ts").read_bytes() == b"480p-001" * 100
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    again = asyncio.run(result.adownload_stream(tmp_path / "async"))
    assert sorted(p.relative_to(tmp_path / "async").as_posix() for p in again) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["async", "hls"]


def test_single_download_gets_umask_permissions(
    http_only_server: ScriptedServer, client: ComputeClient, sample: Path, tmp_path: Path, umask_022: None
) -> None:
    job = client.submit("hash", sample)
    written = job.download("output/result.bin", tmp_path / "result.bin")
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    os.umask(0o077)  # a private umask is honoured as well
    private = job.download("output/result.bin", tmp_path / "private.bin")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_face_crops_and_outputs_are_all_or_nothing(
    http_only_server: ScriptedServer, client: ComputeClient, sample: Path, tmp_path: Path
) -> None:
    job = client.face_detection.detect(sample)
    jid = job.job_id
    faces = [{"bbox": {"x1": 0.1, "y1": 0.1, "x2": 0.3, "y2": 0.3}, "confidence": 0.9,
              "file_path": f"faces/face_{i}.png"} for i in range(3)]  # fmt: skip
    data = {"faces": faces, "num_faces": 3, "image_width": 100, "image_height": 100}
    http_only_server.set_status(jid, "completed", 100)
    http_only_server.jobs[jid]["params"]["output_path"] = "output/face_detection.json"
    http_only_server.files[(jid, "output/face_detection.json")] = json.dumps(data).encode()
    http_only_server.files[(jid, "faces/face_0.png")] = b"crop0"
    http_only_server.files[(jid, "faces/face_1.png")] = b"crop1"  # face_2.png is listed but missing
    result = job.result(timeout=30)
    assert isinstance(result, FaceDetectionResult)
    crops = tmp_path / "crops"
    with pytest.raises(NotFoundError):
        result.download_crops(crops)
    assert not crops.exists()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(NotFoundError):
        result.download_outputs(out)
    assert listing(out) == []
    http_only_server.files[(jid, "faces/face_2.png")] = b"crop2"
    assert [p.name for p in result.download_crops(crops)] == ["face_0.png", "face_1.png", "face_2.png"]
    assert listing(out) == []
    written = result.download_outputs(out)
    assert listing(out) == ["face_detection.json", "faces", "faces/face_0.png", "faces/face_1.png",
                            "faces/face_2.png"]  # fmt: skip
    assert written[0] == out / "face_detection.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops", "out"]


def test_a_folder_in_the_way_fails_before_anything_moves(
    http_only_server: ScriptedServer, client: ComputeClient, sample: Path, tmp_path: Path
) -> None:
    result = hls_result(http_only_server, client, sample, None)
    dest = tmp_path / "hls"
    (dest / "adaptive-720p.m3u8").mkdir(parents=True)  # a folder where a playlist would go
    with pytest.raises(ComputeClientError, match="is a folder"):
        result.download_stream(dest)
    assert listing(dest) == ["adaptive-720p.m3u8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hls"]
