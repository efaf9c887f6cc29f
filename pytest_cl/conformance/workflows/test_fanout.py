"""Fan-out workflow: 50 cheap jobs across four plugins from one client.

Every job gets callbacks at submission; each ``on_complete`` fires exactly once, every result is right
(md5 of the bytes, the EXIF fixture's known values, thumbnail and conversion sizes computed with Pillow),
and after the test deletes all 50 explicitly none of them is left on the server (each id answers 404 to a
GET and to a download). The check goes by job id, not by the server's job count, because other tests may
run on the same deployment at the same time (xdist).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from PIL import Image

from cl_client import ComputeClient, JobNotFoundError, JobResponse, NotFoundError
from cl_client.plugins import PluginJob, PluginResult
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import has_magic

pytestmark = [
    pytest.mark.cl_requires("hash", "exif", "media_thumbnail", "image_conversion"),
    pytest.mark.timeout(240),
]

N_JOBS = 50
DEADLINE_S = 180.0
#: Small decodable images (≥ 64 px on each side, so a 64 px thumbnail never upscales).
IMAGES = (
    "name_spaces",
    "name_unicode",
    "name_hash_question",
    "face_hopper",
    "png_pixels_twin",
    "webp_pixels_twin",
    "png_800x600",
    "jpeg_exif_stripped",
)


@dataclass
class Spec:
    """One job of the fan-out: how to submit it and how to check its result."""

    label: str
    submit: Callable[..., PluginJob[PluginResult]]
    check: Callable[[PluginResult], None]


def _size(item: MediaItem) -> tuple[int, int]:
    with Image.open(item.path) as im:
        return im.size


def _hash_spec(client: ComputeClient, item: MediaItem) -> Spec:
    expected = hashlib.md5(item.read_bytes()).hexdigest()

    def check(result: PluginResult) -> None:
        assert getattr(result, "hash_value") == expected, item.name  # noqa: B009

    return Spec(f"hash {item.name}", lambda **cb: client.hash.compute(item.path, algorithm="md5", **cb), check)


def _exif_spec(client: ComputeClient, item: MediaItem) -> Spec:
    typed = item.fact_mapping("exif").get("typed") if "exif" in item.facts else None

    def check(result: PluginResult) -> None:
        get = getattr(result, "get")  # noqa: B009
        if typed is not None:
            assert get("Make") == typed["make"] and get("Model") == typed["model"], item.name
            assert get("ISO") == typed["iso"], item.name
        else:
            assert get("Make") is None and get("Model") is None, item.name

    return Spec(f"exif {item.name}", lambda **cb: client.exif.extract(item.path, **cb), check)


def _thumbnail_spec(client: ComputeClient, item: MediaItem) -> Spec:
    w, h = _size(item)
    scale = 64 / max(w, h)
    expected = (round(w * scale), round(h * scale))

    def check(result: PluginResult) -> None:
        data = getattr(result, "read_bytes")()  # noqa: B009
        assert has_magic(data, "jpg"), item.name
        with Image.open(io.BytesIO(data)) as im:
            got = im.size
        assert max(got) == 64 and all(abs(a - b) <= 1 for a, b in zip(got, expected, strict=True)), (item.name, got)

    return Spec(
        f"thumbnail {item.name}",
        lambda **cb: client.media_thumbnail.generate(item.path, width=64, height=64, **cb),
        check,
    )


def _conversion_spec(client: ComputeClient, item: MediaItem) -> Spec:
    size = _size(item)

    def check(result: PluginResult) -> None:
        data = getattr(result, "read_bytes")()  # noqa: B009
        assert has_magic(data, "png"), item.name
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.size == size, (item.name, im.size)

    return Spec(f"png {item.name}", lambda **cb: client.image_conversion.convert(item.path, "png", **cb), check)


def _specs(client: ComputeClient, media: MediaCatalogue) -> list[Spec]:
    makers = (_hash_spec, _thumbnail_spec, _conversion_spec)
    specs: list[Spec] = [
        _exif_spec(client, media["jpeg_exif"]),
        _exif_spec(client, media["jpeg_exif_stripped"]),
        _hash_spec(client, media["text_plain"]),
    ]
    i = 0
    while len(specs) < N_JOBS:
        item = media[IMAGES[i % len(IMAGES)]]
        specs.append(makers[i % len(makers)](client, item))
        i += 1
    return specs


def test_fifty_jobs_from_one_client_each_callback_once_all_correct_none_left(
    compute_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """50 jobs over hash/exif/thumbnail/conversion: one on_complete each (status completed), monotonic
    progress, right results; after explicit deletion every id is gone (GET and download 404)."""
    specs = _specs(compute_client, cl_media)
    assert len(specs) == N_JOBS
    cond = threading.Condition()
    completions: Counter[str] = Counter()
    statuses: dict[str, list[str]] = {}
    progress: dict[str, list[int]] = {}

    def on_progress(job: JobResponse) -> None:
        with cond:
            progress.setdefault(job.job_id, []).append(job.progress)

    def on_complete(job: JobResponse) -> None:
        with cond:
            completions[job.job_id] += 1
            statuses.setdefault(job.job_id, []).append(job.status)
            cond.notify_all()

    started = time.monotonic()
    jobs = [spec.submit(on_progress=on_progress, on_complete=on_complete) for spec in specs]
    ids = [j.job_id for j in jobs]
    assert len(set(ids)) == N_JOBS, "job ids are not unique"
    with cond:
        finished = cond.wait_for(lambda: all(completions[i] for i in ids), DEADLINE_S)
        missing = [spec.label for spec, i in zip(specs, ids, strict=True) if not completions[i]]
    assert finished, f"no on_complete within {DEADLINE_S} s for {missing}"
    assert time.monotonic() - started < DEADLINE_S

    outputs: dict[str, str] = {}
    for spec, job in zip(specs, jobs, strict=True):
        result = job.result(30)
        spec.check(result)
        output_path = result.job.params.get("output_path")
        assert isinstance(output_path, str), (spec.label, result.job.params)
        outputs[job.job_id] = output_path
    with cond:  # counted after every result was fetched: late duplicates had time to arrive
        assert set(completions) == set(ids), f"on_complete for jobs not submitted: {set(completions) - set(ids)}"
        repeated = {i: n for i, n in completions.items() if n != 1}
        assert not repeated, f"on_complete fired more than once: {repeated}"
        assert all(statuses[i] == ["completed"] for i in ids), statuses
        backwards = {i: p for i, p in progress.items() if p != sorted(p)}
        assert not backwards, f"progress went backwards: {backwards}"

    for job_id in ids:
        compute_client.delete_job(job_id)
    # nothing of the 50 is left: neither the record nor its output file
    for job_id in ids:
        with pytest.raises(JobNotFoundError):
            compute_client.get_job(job_id)
        with pytest.raises(NotFoundError):
            compute_client.read_job_file(job_id, outputs[job_id])
