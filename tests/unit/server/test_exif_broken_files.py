"""exif on broken files (issue 11 item 13), through the HTTP API of a real deployment, with both backends.

A zero-byte file, a truncated JPEG (header intact, image data cut), a JPEG cut inside its header, a JPEG marker
followed by garbage, a truncated PNG and a truncated MP4 end ``error`` with a clear message, as the other
plugins do; intact files and a text file named ``.jpg`` (read as text, as the conformance suite expects)
still complete.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cl_compute.deployment import Deployment

MEDIA = Path(__file__).resolve().parents[3] / "pytest_cl" / "media"


def _bytes(rel: str, cut: int | None = None) -> bytes:
    data = (MEDIA / rel).read_bytes()
    return data if cut is None else data[:cut]


BROKEN: dict[str, tuple[str, bytes, str]] = {
    "zero-bytes": ("empty.jpg", b"", "empty"),
    "truncated-jpeg": ("truncated.jpg", _bytes("hostile/truncated.jpg"), "end-of-image marker"),
    "jpeg-cut-in-header": ("cut.jpg", _bytes("images/exif_rich.jpg", 300), "runs past the end of the file"),
    "jpeg-marker-then-garbage": ("junk.jpg", b"\xff\xd8\xff\xe0garbage and more garbage", "past the end"),
    "truncated-png": ("cut.png", _bytes("images/synthetic_800x600.png", 4000), "PNG"),
    "truncated-mp4": ("cut.mp4", _bytes("video/testsrc_720p_3s_silent.mp4", 100_000), "'mdat' box"),
}

BACKENDS = [
    "python",
    pytest.param("exiftool", marks=pytest.mark.skipif(not shutil.which("exiftool"), reason="no exiftool")),
]


@pytest.fixture(scope="module", params=BACKENDS)
def exif_server(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    dep = Deployment(workers=1, tasks=["exif"], env={"CL_COMPUTE_EXIF_BACKEND": request.param})
    dep.start()
    try:
        with httpx.Client(base_url=dep.server_url, timeout=30) as http:
            backend = http.get("/internal/workers").json()["workers"][dep.worker_ids[0]]["details"]["exif"]["backend"]
            assert backend.lower().startswith(request.param), backend
            yield http
    finally:
        dep.stop()


def run_exif(http: httpx.Client, name: str, content: bytes) -> dict[str, Any]:
    r = http.post("/jobs/exif", files={"file": (name, content)})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 90
    while True:
        job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        if job["status"] in ("completed", "error"):
            return job
        assert time.monotonic() < deadline, f"exif job {job_id} did not end: {job}"
        time.sleep(0.05)


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_ends_error_with_a_clear_message(exif_server: httpx.Client, case: str) -> None:
    name, content, expected = BROKEN[case]
    job = run_exif(exif_server, name, content)
    assert job["status"] == "error", job
    message = job["error_message"]
    assert expected in message, message
    if content:
        assert message.startswith("Cannot read metadata: the file is damaged or truncated: "), message
    assert job["task_output"] is None


@pytest.mark.parametrize(
    "rel", ["images/exif_rich.jpg", "images/synthetic_800x600.png", "video/testsrc_720p_3s_silent.mp4"]
)
def test_intact_files_still_complete(exif_server: httpx.Client, rel: str) -> None:
    job = run_exif(exif_server, Path(rel).name, _bytes(rel))
    assert job["status"] == "completed", job["error_message"]
    assert job["task_output"]["image_width"] is not None


def test_text_named_jpg_is_refused_as_not_media(exif_server: httpx.Client) -> None:
    """Text named ``.jpg`` is no media file: ``error`` with a message, as the other plugins do (upstream
    completes with FileType TXT; the conformance suite accepts both)."""
    job = run_exif(exif_server, "not_an_image.jpg", _bytes("hostile/not_an_image.jpg"))
    assert job["status"] == "error", job
    assert "not a media file" in job["error_message"] and "not_an_image.jpg" in job["error_message"], job


def test_text_named_txt_and_a_png_named_jpg_still_complete(exif_server: httpx.Client) -> None:
    """Only a media name on non-media content is refused: a ``.txt`` is read as text, a PNG named ``.jpg``
    as the image it is."""
    text = run_exif(exif_server, "notes.txt", _bytes("hostile/not_an_image.jpg"))
    assert text["status"] == "completed", text["error_message"]
    assert text["task_output"]["raw_metadata"]["File:FileType"] == "TXT"
    png = run_exif(exif_server, "really_a_png.jpg", _bytes("images/synthetic_800x600.png"))
    assert png["status"] == "completed", png["error_message"]
    assert png["task_output"]["image_width"] == 800
