"""Image workflow: six plugins on one photo at once, then face identity across photos.

1. On ``group_4_faces`` (4 known people), callbacks registered at submission: exif, thumbnail, hash, clip,
   dino and face detection submitted together and awaited under one deadline; every result is checked
   against what the test computes itself (Pillow pixels, the manifest's faces).
2. Every detected face crop (group + ``face_astronaut`` + ``face_astronaut_variant``) is embedded; the
   astronaut of either single photo is closest to the astronaut of the group photo, and the two single
   photos are closer to each other than to anyone else.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl_client import ComputeClient, JobResponse
from cl_client.plugins.face_detection import FaceDetectionResult
from pytest_cl._media import MediaCatalogue, MediaItem
from pytest_cl.conformance._checks import cosine

CAPS = ("exif", "media_thumbnail", "hash", "clip_embedding", "dino_embedding", "face_detection", "face_embedding")
pytestmark = [pytest.mark.cl_requires(*CAPS), pytest.mark.timeout(180)]

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


def _pixels_sha512(item: MediaItem) -> str:
    with Image.open(item.path) as im:
        im.seek(0)
        return hashlib.sha512(im.tobytes()).hexdigest()


def _match_identities(item: MediaItem, result: FaceDetectionResult) -> dict[int, str]:
    """Detected face index -> manifest identity, by best IoU (> 0.3); every known face matched once."""
    known = item.face_boxes()
    matched: dict[int, str] = {}
    for face in result.faces:
        b = face.bbox
        best = max(known, key=lambda k: k.iou(b.x1, b.y1, b.x2, b.y2))
        assert best.iou(b.x1, b.y1, b.x2, b.y2) > 0.3, f"face {face.index} {b} matches no known face of {item.name}"
        matched[face.index] = best.identity
    assert sorted(matched.values()) == sorted(k.identity for k in known), matched
    return matched


def test_six_plugins_on_one_photo_at_once_then_face_identity(
    compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """All six jobs complete under one deadline with one on_complete each; results match independent
    computations; the astronaut's face is recognised across photos."""
    group = cl_media["group_4_faces"]
    width, height = group.fact_int("width"), group.fact_int("height")
    sink = Completions()
    cb = {"on_progress": sink.on_progress, "on_complete": sink.on_complete}

    started = time.monotonic()
    jobs = {
        "exif": compute_client.exif.extract(group.path, **cb),
        "thumbnail": compute_client.media_thumbnail.generate(group.path, width=320, height=320, **cb),
        "hash": compute_client.hash.compute(group.path, algorithm="sha512", **cb),
        "clip": compute_client.clip_embedding.embed_image(group.path, **cb),
        "dino": compute_client.dino_embedding.embed_image(group.path, **cb),
        "faces": compute_client.face_detection.detect(group.path, **cb),
    }
    ids = [j.job_id for j in jobs.values()]
    assert len(set(ids)) == 6
    assert sink.wait_all(ids, DEADLINE_S), (
        f"not every job completed within {DEADLINE_S} s: missing "
        f"{[name for name, j in jobs.items() if j.job_id not in sink.completed]}"
    )
    assert time.monotonic() - started < DEADLINE_S
    for name, job in jobs.items():
        calls = sink.completed[job.job_id]
        assert [c.status for c in calls] == ["completed"], (name, calls)
        seen = sink.progress.get(job.job_id, [])
        assert seen == sorted(seen), (name, seen)

    # hash: SHA-512 of the decoded pixels (computed here with Pillow)
    hashed = jobs["hash"].result(10)
    assert hashed.algorithm == "sha512_image"
    assert hashed.media_type == "image"
    assert hashed.hash_value == _pixels_sha512(group)

    # exif: the JPEG's real size as ExifTool reads it
    exif = jobs["exif"].result(10)
    assert exif.get("ImageWidth") == width and exif.get("ImageHeight") == height, exif.raw_metadata

    # thumbnail: a JPEG inside 320x320 with the photo's aspect ratio (1 %)
    thumb = jobs["thumbnail"].result(10)
    data = thumb.read_bytes()
    assert data[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(data)) as im:
        tw, th = im.size
    assert max(tw, th) == 320 and tw <= 320 and th <= 320, (tw, th)
    assert abs((tw / th) / (width / height) - 1) < 0.01 + 1 / th, (tw, th)

    # embeddings: the stated dimension, finite, unit norm
    for name, dim in (("clip", 512), ("dino", 384)):
        emb = jobs[name].result(10)
        assert emb.embedding.shape == (dim,) and emb.dim == dim
        assert np.isfinite(emb.embedding).all()
        assert abs(float(np.linalg.norm(emb.embedding)) - 1) < 1e-3

    # faces: the four known people, each where the manifest puts them
    detected = jobs["faces"].result(10)
    assert detected.num_faces == len(detected.faces) == group.face_count == 4
    group_ids = _match_identities(group, detected)

    # identity: detect the single photos, embed every crop, compare
    singles = {
        name: compute_client.face_detection.detect(cl_media[name].path)
        for name in ("face_astronaut", "face_astronaut_variant")
    }
    crops: dict[str, Path] = {}
    for face, path in zip(detected.faces, detected.download_crops(tmp_path / "group"), strict=True):
        crops[f"group:{group_ids[face.index]}"] = path
    for name, job in singles.items():
        result = job.result(60)
        assert result.num_faces == 1, (name, result.num_faces)
        crops[name] = result.download_crops(tmp_path / name)[0]
    for path in crops.values():
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (112, 112)
    embed_jobs = {key: compute_client.face_embedding.embed_faces(path) for key, path in crops.items()}
    vectors = {key: job.result(60).embedding for key, job in embed_jobs.items()}
    for key, vec in vectors.items():
        assert vec.shape == (512,) and np.isfinite(vec).all(), key

    astronaut = "group:eileen_collins"
    for query in ("face_astronaut", "face_astronaut_variant"):
        scores = {k: cosine(vectors[query], v) for k, v in vectors.items() if k.startswith("group:")}
        best = max(scores, key=lambda k: scores[k])
        others = max(s for k, s in scores.items() if k != astronaut)
        assert best == astronaut, f"{query}: closest group face is {best} ({scores})"
        assert scores[astronaut] - others > IDENTITY_MARGIN, f"{query}: margin too small ({scores})"
    same = cosine(vectors["face_astronaut"], vectors["face_astronaut_variant"])
    strangers = [
        cosine(vectors["face_astronaut"], v) for k, v in vectors.items() if k.startswith("group:") and k != astronaut
    ]
    assert same - max(strangers) > IDENTITY_MARGIN, (same, strangers)
