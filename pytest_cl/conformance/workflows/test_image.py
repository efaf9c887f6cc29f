"""Image workflow: six plugins on one photo at once, then face identity across photos.

1. On ``group_4_faces`` (4 known people), callbacks registered at submission: exif, thumbnail, hash, clip,
   dino and face detection are submitted together once (a module fixture) and awaited under one deadline.
   Each plugin's part is then its own check against what the test computes itself (Pillow pixels, the
   manifest's faces), so one plugin's defect does not hide the others passing; one more check covers what
   the six share (the deadline, one ``on_complete`` each, monotonic progress).
2. Every detected face crop (group + ``face_astronaut`` + ``face_astronaut_variant``) is embedded; the
   astronaut of either single photo is closest to the astronaut of the group photo, and the two single
   photos are closer to each other than to anyone else.

Every part uses a plain RGB JPEG, which every upstream-compatible deployment handles (PROTOCOL.md §8): no
part relies on a [fix].
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl_client import ComputeClient, JobResponse, JobTimeoutError
from cl_client.plugins import PluginJob, PluginResult
from cl_client.plugins.face_detection import FaceDetectionResult
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import cosine, expect, expect_value
from pytest_cl.conformance.plugins._media_helpers import image_hash_answers
from pytest_cl.conformance.plugins._ml_helpers import vector_defect
from pytest_cl.deployment import DeploymentInfo

#: part of the workflow -> the plugin (capability) that runs it
PARTS = {
    "exif": "exif",
    "thumbnail": "media_thumbnail",
    "hash": "hash",
    "clip": "clip_embedding",
    "dino": "dino_embedding",
    "faces": "face_detection",
}
pytestmark = [pytest.mark.timeout(180)]

#: One deadline for the six parallel jobs (seconds).
DEADLINE_S = 90.0
#: Cosine margin by which the right identity must beat the best wrong one (the reference deployment's face
#: model gives ~0.99 for the astronaut across photos and at most ~0.90 for strangers; ArcFace-style models
#: spread them further apart).
IDENTITY_MARGIN = 0.05


class Completions:
    """Callback sink: every on_complete/on_progress call by job id (thread-safe, awaitable)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.completed: dict[str, list[JobResponse]] = {}
        self.progress: dict[str, list[int]] = {}

    def on_progress(self, job: JobResponse) -> None:
        with self.cond:
            self.progress.setdefault(job.job_id, []).append(job.progress)

    def on_complete(self, job: JobResponse) -> None:
        with self.cond:
            self.completed.setdefault(job.job_id, []).append(job)
            self.cond.notify_all()

    def wait_all(self, job_ids: list[str], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: all(j in self.completed for j in job_ids), timeout)


@dataclass
class ImageRun:
    """The six jobs on the group photo, their final records (None: not ended by the deadline), the callbacks."""

    group: MediaItem
    jobs: dict[str, PluginJob[PluginResult]]
    records: dict[str, JobResponse | None]
    sink: Completions
    seconds: float

    def result(self, part: str) -> PluginResult:
        """The part's typed result, checked to have completed (else the failure names the job and its message)."""
        assert part in self.jobs, f"the workflow submitted no {PARTS[part]} job (no worker offered it)"
        job, record = self.jobs[part], self.records[part]
        name = f"{PARTS[part]} job {job.job_id} on {self.group.path.name}"
        assert record is not None, f"{name} did not end within the {DEADLINE_S:.0f} s deadline"
        assert record.status == "completed", (
            f"{name} ended {record.status!r} ({record.error_message or 'no error_message'}); expected 'completed'"
        )
        return job.result(10)


@pytest.fixture(scope="module")
def image_run(
    cl_session_client: ComputeClient, cl_media: MediaCatalogue, cl_deployment: DeploymentInfo
) -> ImageRun | None:
    """Submit the six jobs together once and wait for all of them under one deadline. Only the parts whose
    plugin the deployment offers are submitted (None when it offers none of them): the checks of the other parts
    apply the missing-worker policy through their ``cl_requires``, and the parts that ran are still checked."""
    client = cl_session_client
    group = cl_media["group_4_faces"]
    sink = Completions()
    cb = {"on_progress": sink.on_progress, "on_complete": sink.on_complete}
    submit: dict[str, Callable[[], PluginJob[PluginResult]]] = {
        "exif": lambda: client.exif.extract(group.path, **cb),
        "thumbnail": lambda: client.media_thumbnail.generate(group.path, width=320, height=320, **cb),
        "hash": lambda: client.hash.compute(group.path, algorithm="sha512", **cb),
        "clip": lambda: client.clip_embedding.embed_image(group.path, **cb),
        "dino": lambda: client.dino_embedding.embed_image(group.path, **cb),
        "faces": lambda: client.face_detection.detect(group.path, **cb),
    }
    offered = [part for part in PARTS if cl_deployment.offers(PARTS[part])]
    if not offered:
        return None
    started = time.monotonic()
    jobs = {part: submit[part]() for part in offered}
    sink.wait_all([j.job_id for j in jobs.values()], DEADLINE_S)
    records: dict[str, JobResponse | None] = {}
    for name, job in jobs.items():
        try:
            records[name] = job.wait(max(1.0, DEADLINE_S - (time.monotonic() - started)))
        except JobTimeoutError:
            records[name] = None
    return ImageRun(group, jobs, records, sink, time.monotonic() - started)


def _run(image_run: ImageRun | None) -> ImageRun:
    assert image_run is not None, "the workflow's jobs were not submitted (a worker is missing)"
    return image_run


def _pixels_sha512(item: MediaItem) -> str:
    with Image.open(item.path) as im:
        im.seek(0)
        return hashlib.sha512(im.tobytes()).hexdigest()


def _match_identities(item: MediaItem, result: FaceDetectionResult) -> dict[int, str]:
    """Detected face index -> manifest identity, by best IoU (> 0.3); every known face matched once."""
    known = item.face_boxes()
    matched: dict[int, str] = {}
    where = f"face_detection job {result.job_id} on {item.path.name}"
    for face in result.faces:
        b = face.bbox
        best = max(known, key=lambda k: k.iou(b.x1, b.y1, b.x2, b.y2))
        assert best.iou(b.x1, b.y1, b.x2, b.y2) > 0.3, (
            f"{where}: face {face.index} {b} matches no known face (best {best.identity},"
            f" IoU {best.iou(b.x1, b.y1, b.x2, b.y2):.2f}, needed > 0.3)"
        )
        matched[face.index] = best.identity
    expect(
        sorted(matched.values()),
        sorted(k.identity for k in known),
        f"{where}: the known people matched by the detections (face index -> person {matched})",
    )
    return matched


# -- what the six share ---------------------------------------------------------------------------------------
@pytest.mark.cl_requires(*PARTS.values())
def test_all_six_end_under_one_deadline_with_one_callback_each(image_run: ImageRun | None) -> None:
    """The six jobs get distinct ids and all complete within the deadline; each fires ``on_complete`` exactly
    once (status completed) and its ``on_progress`` values never go backwards."""
    run = _run(image_run)
    ids = {name: j.job_id for name, j in run.jobs.items()}
    assert len(set(ids.values())) == 6, f"the six submissions did not get six distinct job ids: {ids}"
    open_jobs = {n: run.jobs[n].job_id for n, r in run.records.items() if r is None}
    assert not open_jobs, f"jobs not ended within the {DEADLINE_S:.0f} s deadline: {open_jobs}"
    assert run.seconds < DEADLINE_S, f"the six jobs took {run.seconds:.0f} s, the deadline is {DEADLINE_S:.0f} s"
    with run.sink.cond:  # read after every record was fetched: late duplicates had time to arrive
        for name, job in run.jobs.items():
            calls = run.sink.completed.get(job.job_id, [])
            expect(
                [c.status for c in calls],
                ["completed"],
                f"{PARTS[name]} job {job.job_id}: the statuses on_complete was called with (once, completed)",
            )
            seen = run.sink.progress.get(job.job_id, [])
            assert seen == sorted(seen), f"{PARTS[name]} job {job.job_id}: on_progress went backwards: {seen}"


# -- each plugin's part ---------------------------------------------------------------------------------------
@pytest.mark.cl_requires("hash")
def test_hash_part(image_run: ImageRun | None) -> None:
    """sha512 of the photo is ``sha512_image``: the SHA-512 of its decoded pixels (computed here with Pillow)."""
    run = _run(image_run)
    hashed = run.result("hash")
    where = f"hash job {run.jobs['hash'].job_id} on {run.group.path.name}"
    expect(getattr(hashed, "algorithm"), "sha512_image", f"{where}: algorithm")  # noqa: B009
    expect(getattr(hashed, "media_type"), "image", f"{where}: media_type")  # noqa: B009
    expected = _pixels_sha512(run.group)
    expect_value(
        getattr(hashed, "hash_value"),  # noqa: B009
        expected,
        f"{where}: hash_value",
        meaning="the SHA-512 of the decoded pixels",
        wrong=image_hash_answers(run.group.path, expected),
    )


@pytest.mark.cl_requires("exif")
def test_exif_part(image_run: ImageRun | None) -> None:
    """ExifTool's view of the JPEG: its real size."""
    run = _run(image_run)
    width, height = run.group.fact_int("width"), run.group.fact_int("height")
    exif = run.result("exif")
    get = getattr(exif, "get")  # noqa: B009
    size = (get("ImageWidth"), get("ImageHeight"))
    assert size == (width, height), (
        f"exif job {run.jobs['exif'].job_id} on {run.group.path.name}: expected ImageWidth/ImageHeight"
        f" {width}x{height}, got {size} (raw_metadata {getattr(exif, 'raw_metadata')})"  # noqa: B009
    )


@pytest.mark.cl_requires("media_thumbnail")
def test_thumbnail_part(image_run: ImageRun | None) -> None:
    """A JPEG inside 320x320 touching the box, with the photo's aspect ratio (1 %)."""
    run = _run(image_run)
    width, height = run.group.fact_int("width"), run.group.fact_int("height")
    where = f"media_thumbnail job {run.jobs['thumbnail'].job_id} on {run.group.path.name}"
    data = getattr(run.result("thumbnail"), "read_bytes")()  # noqa: B009
    assert data[:3] == b"\xff\xd8\xff", f"{where}: the thumbnail is not a JPEG (starts with {data[:4]!r})"
    with Image.open(io.BytesIO(data)) as im:
        tw, th = im.size
    assert max(tw, th) == 320 and tw <= 320 and th <= 320, (
        f"{where}: expected a thumbnail inside 320x320 with the longer side 320, got {tw}x{th}"
    )
    assert abs((tw / th) / (width / height) - 1) < 0.01 + 1 / th, (
        f"{where}: a {width}x{height} photo gave a {tw}x{th} thumbnail: the aspect ratio is not kept"
    )


@pytest.mark.parametrize(
    ("part", "dim"),
    [
        pytest.param("clip", 512, marks=pytest.mark.cl_requires("clip_embedding"), id="clip_embedding"),
        pytest.param("dino", 384, marks=pytest.mark.cl_requires("dino_embedding"), id="dino_embedding"),
    ],
)
def test_embedding_part(image_run: ImageRun | None, part: str, dim: int) -> None:
    """The embedding has the stated dimension, is finite and has unit norm."""
    run = _run(image_run)
    where = f"{PARTS[part]} job {run.jobs[part].job_id} on {run.group.path.name}"
    emb = run.result(part)
    vector = getattr(emb, "embedding")  # noqa: B009
    seen_dim = getattr(emb, "dim")  # noqa: B009
    expect(seen_dim, dim, f"{where}: the result's dim")
    defect = vector_defect(np.asarray(vector, dtype=np.float32), dim, normalized=True)  # the client's dtype
    assert defect is None, f"{where}: {defect}"


@pytest.mark.cl_requires("face_detection")
def test_face_detection_part(image_run: ImageRun | None) -> None:
    """The four known people, each where the manifest puts them."""
    run = _run(image_run)
    detected = run.result("faces")
    assert isinstance(detected, FaceDetectionResult), f"the client gave {type(detected).__name__} for face_detection"
    where = f"face_detection job {detected.job_id} on {run.group.path.name}"
    assert detected.num_faces == len(detected.faces) == run.group.face_count == 4, (
        f"{where}: expected the 4 people of the photo, got num_faces {detected.num_faces}"
        f" with {len(detected.faces)} faces"
    )
    _match_identities(run.group, detected)


@pytest.mark.cl_requires("face_detection", "face_embedding")
def test_face_identity_across_photos(
    image_run: ImageRun | None, compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """Every face crop (the group's four, the two single photos of the astronaut) is a 112x112 PNG and is
    embedded; the astronaut of either single photo is closest to the astronaut of the group photo by a margin,
    and the two single photos are closer to each other than to anyone else."""
    run = _run(image_run)
    detected = run.result("faces")
    assert isinstance(detected, FaceDetectionResult), f"the client gave {type(detected).__name__} for face_detection"
    group_ids = _match_identities(run.group, detected)
    singles = {
        name: compute_client.face_detection.detect(cl_media[name].path)
        for name in ("face_astronaut", "face_astronaut_variant")
    }
    crops: dict[str, Path] = {}
    for face, path in zip(detected.faces, detected.download_crops(tmp_path / "group"), strict=True):
        crops[f"group:{group_ids[face.index]}"] = path
    for name, job in singles.items():
        result = job.result(60)
        assert result.num_faces == 1, (
            f"face_detection job {job.job_id} on {name}: expected 1 face, got {result.num_faces}"
        )
        crops[name] = result.download_crops(tmp_path / name)[0]
    for key, path in crops.items():
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (112, 112), (
                f"face crop of {key}: expected a 112x112 PNG, got a {im.format} of {im.size[0]}x{im.size[1]}"
            )
    embed_jobs = {key: compute_client.face_embedding.embed_faces(path) for key, path in crops.items()}
    vectors = {key: job.result(60).embedding for key, job in embed_jobs.items()}
    for key, vec in vectors.items():
        assert vec.shape == (512,) and np.isfinite(vec).all(), (
            f"face_embedding job {embed_jobs[key].job_id} ({key}): expected 512 finite values, got shape {vec.shape}"
        )

    astronaut = "group:eileen_collins"
    for query in ("face_astronaut", "face_astronaut_variant"):
        scores = {k: cosine(vectors[query], v) for k, v in vectors.items() if k.startswith("group:")}
        best = max(scores, key=lambda k: scores[k])
        others = max(s for k, s in scores.items() if k != astronaut)
        assert best == astronaut, f"{query}: the closest group face is {best}, expected {astronaut} ({scores})"
        assert scores[astronaut] - others > IDENTITY_MARGIN, (
            f"{query}: {astronaut} wins by only {scores[astronaut] - others:.3f} cosine, expected more than"
            f" {IDENTITY_MARGIN} ({scores})"
        )
    same = cosine(vectors["face_astronaut"], vectors["face_astronaut_variant"])
    strangers = [
        cosine(vectors["face_astronaut"], v) for k, v in vectors.items() if k.startswith("group:") and k != astronaut
    ]
    assert same - max(strangers) > IDENTITY_MARGIN, (
        f"the astronaut's two single photos have cosine {same:.3f}, the closest stranger {max(strangers):.3f}:"
        f" expected a margin of more than {IDENTITY_MARGIN}"
    )
