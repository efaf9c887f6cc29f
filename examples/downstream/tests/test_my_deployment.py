"""What a downstream project writes: its own checks with cl-client's fixtures, markers and test media.

Run ``pytest -n 2`` (embedded reference deployment) or ``pytest -n 2 --cl-server URL --cl-mqtt URL``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import cast

import pytest
from PIL import Image

from cl_client import AsyncComputeClient, ComputeClient, JobFailedError

pytestmark = pytest.mark.cl_requires("hash")


@pytest.mark.timeout(90)
def test_md5_is_the_md5_of_the_uploaded_bytes(compute_client: ComputeClient, cl_media) -> None:
    item = cl_media["png_800x600"]
    result = compute_client.hash.compute(item.path, algorithm="md5").result()
    assert result.hash_value == hashlib.md5(item.read_bytes()).hexdigest(), (
        f"md5 of {item.path.name}: expected the MD5 of its bytes, the deployment returned {result.hash_value}"
    )


@pytest.mark.timeout(90)
def test_thumbnail_fits_the_box_and_keeps_the_aspect_ratio(compute_client, cl_media, require_worker, tmp_path):
    require_worker("media_thumbnail")
    item = cl_media["jpeg_1920x1080"]
    result = compute_client.media_thumbnail.generate(item.path, width=320, height=320).result()
    path = result.download(tmp_path / "thumb.jpg")
    with Image.open(path) as img:
        size = img.size
    box = f"thumbnail of a 1920x1080 image in a 320x320 box: expected 320x180, got {size[0]}x{size[1]}"
    assert max(size) == 320, box
    assert abs(size[0] / size[1] - 16 / 9) < 0.02, box


@pytest.mark.timeout(90)
def test_an_empty_file_is_refused_or_hashed_never_hangs(compute_client, cl_media) -> None:
    item = cl_media["hostile_empty"]
    job = compute_client.hash.compute(item.path)
    record = job.wait()  # ends completed or error, within --cl-job-timeout
    if record.status == "error":  # the reference deployment refuses it with a message
        assert record.error_message, f"job {record.job_id} failed without an error_message"
        with pytest.raises(JobFailedError):
            job.result()
    else:  # upstream hashes zero bytes (PROTOCOL §8)
        value = job.result().hash_value
        assert value == hashlib.sha512(b"").hexdigest(), f"sha512 of no bytes expected, got {value}"


@pytest.mark.cl_requires("exif")
@pytest.mark.timeout(90)
def test_exif_make_and_model_are_read(compute_client, cl_media, cl_jobs) -> None:
    item = cl_media["jpeg_exif"]
    expected = cast("Mapping[str, object]", item.fact_mapping("exif")["typed"])
    result = compute_client.exif.extract(item.path, tags=["Make", "Model"]).result()
    assert len(cl_jobs()) == 1, f"one job expected for one extract call, the fixture recorded {cl_jobs()}"
    seen = {"make": result.make, "model": result.model}
    want = {"make": expected.get("make"), "model": expected.get("model")}
    assert seen == want, f"exif of {item.path.name}: expected {json.dumps(want)}, got {json.dumps(seen)}"


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_the_async_client_hashes_too(async_compute_client: AsyncComputeClient, cl_media, cl_jobs) -> None:
    """``async_compute_client`` needs nothing beyond the ``pytest`` extra (it brings pytest-asyncio)."""
    item = cl_media["png_800x600"]
    job = await async_compute_client.hash.compute(item.path, algorithm="md5")
    result = await job.result()
    assert result.hash_value == hashlib.md5(item.read_bytes()).hexdigest(), (
        f"md5 of {item.path.name} through the async client: expected the MD5 of its bytes, got {result.hash_value}"
    )
    assert len(cl_jobs()) == 1, f"one job expected, the fixture recorded {cl_jobs()}"
