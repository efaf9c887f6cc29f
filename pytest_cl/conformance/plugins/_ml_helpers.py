"""Shared machinery of the ML plugin suites (clip_embedding, dino_embedding, face_detection, face_embedding).

* ``run_jobs`` / ``run_job``: submit through the generic ``ComputeClient.submit`` (form fields sent as given, so
  the suites see what the *server* does), wait through ``on_complete`` (the MQTT-callback path, or the polling
  path for the ``polling`` client) and check that it fired exactly once with the confirmed final record.
* ``load_npy`` / ``read_face_detection``: outputs fetched as files (``params.output_path``, ``faces[i].file_path``)
  and read with numpy, json and Pillow, never with the client's typed results.
* Module-level caches of *downloaded data* (never job handles: jobs are deleted after each test) keyed by
  task, input bytes and parameters, so that tests sharing an input do not repeat its job.
* ``ImageEmbeddingSuite``: the one body of the clip and dino suites; each file subclasses it with its task
  and dimension.

Expected values come from the tests: the media manifest (face counts, rough boxes, identities, sizes), Pillow
(copies of committed images made in the test) and numpy (norms, cosines).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from cl_client import ComputeClient, Job, JobFailedError, JobResponse, ValidationError
from pytest_cl._media import MediaCatalogue
from pytest_cl.conformance._checks import cosine, expect_one_completion, expect_param, get_field, has_magic

#: inputs that are not decodable images (manifest: ``decodable`` false); every image plugin must fail on them
HOSTILE = ("hostile_truncated_jpeg", "hostile_text_as_jpeg", "hostile_empty")
NPY_MAGIC = b"\x93NUMPY"
#: |norm - 1| allowed for a normalised float32 vector
NORM_TOL = 1e-3

Params = Mapping[str, object]


# -- running jobs ------------------------------------------------------------------------------------------
@dataclass
class _Completion:
    """What ``on_complete`` delivered for one job."""

    calls: list[JobResponse] = field(default_factory=list[JobResponse])
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, job: JobResponse) -> None:
        self.calls.append(job)
        self.done.set()


def run_jobs(
    client: ComputeClient,
    task_type: str,
    inputs: Sequence[tuple[Path, Params]],
    *,
    filenames: Sequence[str | None] | None = None,
) -> list[JobResponse]:
    """Submit every ``(path, form fields)`` at once, wait for all through ``on_complete``, return the records.

    Each job's ``on_complete`` must fire exactly once, with the status that ``GET /jobs/{id}`` then confirms,
    within the client's job timeout (``--cl-job-timeout``, which ends before the test's own timeout: a job
    that never ends fails here, it does not hang the run). The records are the confirmed ones, completed or
    error: the caller decides which it expects.
    """
    timeout = client.config.job_timeout
    names = list(filenames) if filenames is not None else [None] * len(inputs)
    submitted = []
    for (path, params), name in zip(inputs, names, strict=True):
        completion = _Completion()
        job = client.submit(task_type, path, dict(params), on_complete=completion, filename=name)
        submitted.append((job, completion))
    records = []
    for job, completion in submitted:
        assert completion.done.wait(timeout), (
            f"{task_type} job {job.job_id}: on_complete did not fire within {timeout} s (status {job.status})"
        )
        final = job.wait(timeout)
        expect_one_completion(task_type, job.job_id, final, completion.calls)
        records.append(final)
    return records


def run_job(
    client: ComputeClient, task_type: str, path: Path, params: Params | None = None, *, filename: str | None = None
) -> JobResponse:
    """``run_jobs`` for one input."""
    return run_jobs(client, task_type, [(path, params or {})], filenames=[filename])[0]


def assert_completed(record: JobResponse) -> JobResponse:
    """The job completed (the server's error message is shown otherwise) with progress 100."""
    assert record.status == "completed", (
        f"{record.task_type} job {record.job_id} ended {record.status!r} ({record.error_message}), expected 'completed'"
    )
    assert record.progress == 100, (
        f"{record.task_type} job {record.job_id} completed with progress {record.progress}, expected 100"
    )
    return record


def completed(client: ComputeClient, task_type: str, path: Path, params: Params | None = None) -> JobResponse:
    """Run one job that must complete."""
    return assert_completed(run_job(client, task_type, path, params))


def output_path(record: JobResponse) -> str:
    """``params.output_path``: the protocol's only way to find the output file."""
    value = record.params.get("output_path")
    assert isinstance(value, str) and value, f"job {record.job_id} has no params.output_path: {record.params}"
    return value


def check_hostile_inputs_fail(client: ComputeClient, cl_media: MediaCatalogue, task_type: str) -> None:
    """Truncated JPEG, text named .jpg and an empty file: each job ends ``error`` with a message, no hang.

    The wait goes through ``on_complete`` (MQTT events for the fixture client: upstream is silent on
    failures, so the client's polling fallback must end it) and is bounded by the job timeout. The job record
    keeps the message, ``Job.result`` raises ``JobFailedError`` carrying it, and no output file is served.
    """
    items = [cl_media[name] for name in HOSTILE]
    for item in items:
        assert not item.fact_bool("decodable"), f"test media {item.name} is decodable: not a hostile input"
    records = run_jobs(client, task_type, [(item.path, {}) for item in items])
    for item, record in zip(items, records, strict=True):
        assert record.status in {"error", "failed"}, (
            f"{task_type} job {record.job_id} on {item.name} (not a decodable image) ended {record.status!r},"
            " expected 'error'"
        )
        assert isinstance(record.error_message, str) and record.error_message.strip(), (
            f"{task_type} job {record.job_id} on {item.name} ended 'error' without an error_message"
            f" (got {record.error_message!r})"
        )
        with pytest.raises(JobFailedError) as info:
            Job(client, record.job_id, record.task_type).result()
        assert info.value.job.error_message == record.error_message, (
            f"{task_type} job {record.job_id}: a second GET gave error_message {info.value.job.error_message!r},"
            f" the first {record.error_message!r}"
        )


def assert_rejected(client: ComputeClient, task_type: str, path: Path, params: Params, field_name: str) -> None:
    """The server answers 422 naming ``field_name`` (sent raw: the generic submit does not validate)."""
    with pytest.raises(ValidationError) as info:
        client.submit(task_type, path, dict(params))
    assert info.value.status_code == 422, (
        f"POST /jobs/{task_type} with {dict(params)}: expected HTTP 422, got {info.value.status_code}"
    )
    locations = [loc for loc, _ in info.value.errors]
    assert any(loc.endswith(field_name) for loc in locations), (
        f"POST /jobs/{task_type} with {dict(params)}: the 422 does not name {field_name!r}: {info.value.detail}"
    )


# -- reading outputs as files ------------------------------------------------------------------------------
def load_npy(client: ComputeClient, record: JobResponse, dest: Path) -> NDArray[np.generic]:
    """Download the job's ``.npy`` (``params.output_path``) to ``dest`` and load it with numpy (no pickles)."""
    rel = output_path(record)
    assert rel.endswith(".npy"), (
        f"{record.task_type} job {record.job_id}: params.output_path {rel!r} is not a .npy file"
    )
    dest.mkdir(parents=True, exist_ok=True)
    written = client.download_job_file(record.job_id, rel, dest / f"{record.job_id}.npy")
    data = written.read_bytes()
    assert data.startswith(NPY_MAGIC), (
        f"{record.task_type} job {record.job_id}: {rel} is not an .npy file: {data[:16]!r}"
    )
    return np.load(io.BytesIO(data), allow_pickle=False)


#: vector length -> the models (plugins) whose vectors have it, to name "a vector of another model's length"
KNOWN_LENGTHS: dict[int, str] = {
    512: "a clip_embedding or face_embedding vector (CLIP ViT-B/32, ArcFace)",
    384: "a dino_embedding vector (DINOv2 ViT-S/14)",
    128: "a raw dlib / FaceNet face descriptor",
    768: "a CLIP ViT-L/14 or DINOv2 ViT-B/14 vector",
    1024: "a DINOv2 ViT-L/14 vector",
    1536: "a DINOv2 ViT-g/14 vector",
}


def vector_defect(vector: NDArray[np.generic], dim: int, *, normalized: bool) -> str | None:
    """None when ``vector`` is a finite float32 vector of ``dim`` values with L2 norm 1 (``normalized``) or clearly
    not 1 (not ``normalized``); else a sentence naming the defect: another dtype (float64, float16, …), a batch of
    one, the length of another model's vectors (zero-padded or cut), non-finite values, no normalisation, the L1
    or max-abs norm instead of L2, or normalised although ``normalize=false``."""
    if vector.dtype != np.float32:
        kind = {"float64": "float64 (8-byte floats)", "float16": "float16 (half precision)"}.get(
            str(vector.dtype), str(vector.dtype)
        )
        return f"stored as {kind}, expected float32"
    if vector.shape != (dim,):
        if vector.size == dim:
            return f"shape {vector.shape}, expected ({dim},): the {dim} values are wrapped in a batch axis"
        flat = vector.reshape(-1)
        said = f"{flat.size} values, expected {dim}"
        if flat.size in KNOWN_LENGTHS:
            said += f": the length of {KNOWN_LENGTHS[flat.size]}"
        if flat.size > dim and not np.any(flat[dim:]):
            said += f" (values {dim}… are zero: padded)"
        return said
    if not np.isfinite(vector).all():
        return f"{int((~np.isfinite(vector)).sum())} non-finite values (NaN or infinite)"
    wide = vector.astype(np.float64)
    norm = float(np.linalg.norm(wide))
    if normalized and abs(norm - 1.0) >= NORM_TOL:
        if abs(float(np.abs(wide).sum()) - 1.0) < NORM_TOL:
            return f"not normalised to L2 norm 1 (norm {norm:.4g}): it is normalised with the L1 norm (sum of |v| is 1)"
        if abs(float(np.abs(wide).max()) - 1.0) < NORM_TOL:
            return f"not normalised to L2 norm 1 (norm {norm:.4g}): it is scaled to a largest |value| of 1"
        return f"not normalised (L2 norm {norm:.4g}, expected 1 ± {NORM_TOL}): normalize=true was ignored"
    if not normalized and abs(norm - 1.0) <= 0.01:
        return f"normalised (L2 norm {norm:.4g}) although normalize=false: the field was ignored"
    return None


def check_vector(
    vector: NDArray[np.generic], dim: int, *, normalized: bool, what: str = "the embedding"
) -> NDArray[np.float32]:
    """A finite float32 vector of ``dim`` values; L2 norm 1 when ``normalized``, clearly not 1 otherwise.

    ``what`` names the vector in a failure (e.g. ``"clip_embedding job <id>: output/clip_embedding.npy"``); the
    failure says which defect it has (see :func:`vector_defect`).
    """
    defect = vector_defect(vector, dim, normalized=normalized)
    assert defect is None, f"{what}: {defect}"
    return vector.astype(np.float32)


# -- face detection: what a wrong box or wrong landmarks are -------------------------------------------------------
Box = tuple[float, float, float, float]
Point = tuple[float, float]


def _inside(point: Point, box: Box, slack: float = 0.05) -> bool:
    x1, y1, x2, y2 = box
    dx, dy = slack * (x2 - x1), slack * (y2 - y1)
    return x1 - dx <= point[0] <= x2 + dx and y1 - dy <= point[1] <= y2 + dy


def box_defect(box: Box, image_size: tuple[int, int]) -> str | None:
    """None when the bbox is normalised corners with 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1; else the defect:
    in pixels, corners swapped, (x, y, width, height) instead of corners, or out of range."""
    x1, y1, x2, y2 = box
    width, height = image_size
    if 0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0:
        return None
    if max(box) > 1.0 and all(0.0 <= v <= 1.0 for v in (x1 / width, y1 / height, x2 / width, y2 / height)):
        return f"bbox {box} is in pixels, not normalised to [0, 1] (divided by the {width}×{height} image size it is)"
    if x1 > x2 or y1 > y2:
        return f"bbox {box} has its corners swapped (x1 > x2 or y1 > y2)"
    if x1 + x2 <= 1.0 and y1 + y2 <= 1.0 and (x2 <= x1 or y2 <= y1):
        return f"bbox {box} looks like (x, y, width, height), not corners (x1, y1, x2, y2)"
    return f"bbox {box} is not 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1"


def misplaced_box(box: Box, iou: Callable[[Box], float], min_iou: float) -> str | None:
    """For a bbox that overlaps no known face (``iou`` gives the best IoU with a known face): the named defect
    when a transformed box does overlap one — x and y swapped, y from the bottom, (x, y, w, h) — else None."""
    x1, y1, x2, y2 = box
    candidates: dict[str, Box] = {
        "x and y swapped": (y1, x1, y2, x2),
        "y measured from the bottom (flipped)": (x1, 1 - y2, x2, 1 - y1),
        "(x, y, width, height), not corners": (x1, y1, x1 + x2, y1 + y2),
        "x measured from the right (mirrored)": (1 - x2, y1, 1 - x1, y2),
    }
    for name, candidate in candidates.items():
        if iou(candidate) > min_iou:
            return name
    return None


def landmark_defect(box: Box, points: Mapping[str, Point], image_size: tuple[int, int]) -> str | None:
    """None when the five landmarks are normalised like the bbox, lie in it (5 % slack) in anatomical order (eyes
    above the nose tip above the mouth corners; the person's right eye and mouth corner on the image's left); else
    the defect: landmarks in pixels while the bbox is normalised, [y, x] pairs, the right and left names swapped,
    upside down, or one point outside its box."""
    width, height = image_size
    normalised_box = all(-0.01 <= v <= 1.01 for v in box)
    largest = max(abs(c) for p in points.values() for c in p)
    if normalised_box and largest > 1.5:
        scaled = {n: (x / width, y / height) for n, (x, y) in points.items()}
        fits = all(_inside(p, box) for p in scaled.values())
        return f"landmarks in pixels while the bbox is normalised (values up to {largest:.1f};" + (
            f" divided by the {width}×{height} image size they fall inside the bbox)"
            if fits
            else " even divided by the image size they miss the bbox)"
        )
    outside = [n for n, p in points.items() if not _inside(p, box)]
    swapped = {n: (y, x) for n, (x, y) in points.items()}
    swapped_fits = all(_inside(p, box) for p in swapped.values()) and _anatomy_defect(swapped) is None
    if outside:
        if swapped_fits:
            return f"landmarks are [y, x] pairs, not [x, y]: swapped they fall inside the bbox {box} ({dict(points)})"
        name = outside[0]
        return f"landmark {name} {points[name]} outside its bbox {box} (5 % slack)"
    defect = _anatomy_defect(points)
    if defect is not None and swapped_fits:
        return f"landmarks are [y, x] pairs, not [x, y]: swapped they are in anatomical order ({dict(points)})"
    return defect


def _anatomy_defect(points: Mapping[str, Point]) -> str | None:
    """None when the landmarks are in anatomical order (see :func:`landmark_defect`), else what is out of order."""
    right_eye, left_eye, nose = points["right_eye"], points["left_eye"], points["nose_tip"]
    mouth_right, mouth_left = points["mouth_right"], points["mouth_left"]
    if min(right_eye[1], left_eye[1]) > nose[1] > max(mouth_right[1], mouth_left[1]):
        return f"landmarks upside down: the mouth is above the nose and the eyes below it (y from the bottom?) {points}"
    eyes_swapped = right_eye[0] > left_eye[0]
    mouth_swapped = mouth_right[0] > mouth_left[0]
    if eyes_swapped and mouth_swapped:
        return (
            "right and left swapped for the eyes and the mouth corners: the names follow the image's sides, not the"
            f" person's (the person's right_eye and mouth_right are on the image's left) {dict(points)}"
        )
    if eyes_swapped:
        return (
            f"right_eye and left_eye swapped: right_eye {right_eye} is right of left_eye {left_eye} in the image"
            " (the person's right eye is on the image's left)"
        )
    if mouth_swapped:
        return f"mouth_right and mouth_left swapped: mouth_right {mouth_right} is right of mouth_left {mouth_left}"
    if not max(right_eye[1], left_eye[1]) < nose[1]:
        return f"the eyes are not above the nose tip {dict(points)}"
    if not nose[1] < min(mouth_right[1], mouth_left[1]):
        return f"the nose tip is not above the mouth corners {dict(points)}"
    return None


def npy_label(record: JobResponse) -> str:
    """How a failure names a job's vector: ``"<task_type> job <id>: <output_path>"``."""
    return f"{record.task_type} job {record.job_id}: {record.params.get('output_path')}"


def expect_task_output(record: JobResponse, dim: int, normalized: bool) -> None:
    """``task_output`` is ``{embedding_dim: dim, normalized: normalized, …}`` (PROTOCOL.md §3)."""
    out = record.task_output or {}
    seen = (out.get("embedding_dim", "<missing>"), out.get("normalized", "<missing>"))
    assert seen == (dim, normalized), (
        f"{record.task_type} job {record.job_id}: expected task_output embedding_dim {dim}, normalized {normalized};"
        f" got {seen[0]!r}, {seen[1]!r} (task_output {out})"
    )


def file_key(path: Path) -> str:
    """Cache key of an input: the SHA-256 of its bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Embedded:
    """An embedding job's outputs as downloaded: the checked vector and the record's ``task_output``."""

    vector: NDArray[np.float32]
    task_output: dict[str, object]


#: (task_type, sha256 of the input, frozen form fields) -> the downloaded vector and task_output
_EMBEDDED: dict[tuple[str, str, str], Embedded] = {}


def embed_all(
    client: ComputeClient, task_type: str, paths: Sequence[Path], dim: int, dest: Path, *, normalize: bool = True
) -> list[Embedded]:
    """The vectors of ``paths`` (``normalize`` sent explicitly), each checked; cached by input bytes."""
    params = {"normalize": normalize}
    keys = [(task_type, file_key(p), json.dumps(params, sort_keys=True)) for p in paths]
    unique = list({k: p for p, k in zip(paths, keys, strict=True) if k not in _EMBEDDED}.items())
    if unique:
        records = run_jobs(client, task_type, [(p, params) for _, p in unique])
        for (key, _), record in zip(unique, records, strict=True):
            assert_completed(record)
            vector = check_vector(load_npy(client, record, dest), dim, normalized=normalize, what=npy_label(record))
            _EMBEDDED[key] = Embedded(vector, dict(record.task_output or {}))
    return [_EMBEDDED[k] for k in keys]


# -- face detection ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """A face_detection job's outputs as downloaded: the record, ``face_detection.json`` and the crop files."""

    record: JobResponse
    data: dict[str, object]
    crops: dict[str, bytes]

    @property
    def where(self) -> str:
        """How a failure names this job's JSON file: ``"face_detection job <id>: output/face_detection.json"``."""
        return f"face_detection job {self.record.job_id}: {self.record.params.get('output_path')}"

    def get(self, key: str) -> object:
        """A top-level field of the JSON file (a missing one fails with a sentence naming it)."""
        return get_field(self.data, key, where=self.where)

    @property
    def faces(self) -> list[dict[str, object]]:
        """The faces of the JSON file."""
        faces = self.data.get("faces")
        assert isinstance(faces, list), (
            f"face_detection job {self.record.job_id}: 'faces' of face_detection.json is not a list: {faces!r:.200}"
        )
        return faces  # type: ignore[return-value]


def read_face_detection(client: ComputeClient, record: JobResponse) -> Detection:
    """Download ``output/face_detection.json`` (``params.output_path``) and every ``faces[i].file_path``."""
    assert_completed(record)
    rel_json = output_path(record)
    raw = client.read_job_file(record.job_id, rel_json)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise AssertionError(f"face_detection job {record.job_id}: {rel_json} is not JSON ({exc})") from None
    assert isinstance(data, dict) and isinstance(data.get("faces"), list), (
        f"face_detection job {record.job_id}: {rel_json} is not an object with a 'faces' list: {data!r:.300}"
    )
    crops: dict[str, bytes] = {}
    for index, face in enumerate(data["faces"]):
        rel = face.get("file_path") if isinstance(face, dict) else None
        assert isinstance(rel, str) and rel, (
            f"face_detection job {record.job_id}: faces[{index}] of {rel_json} has no 'file_path': {face!r:.200}"
        )
        crops[rel] = client.read_job_file(record.job_id, rel)
    return Detection(record, data, crops)


#: (sha256 of the input, frozen form fields) -> the downloaded detection
_DETECTIONS: dict[tuple[str, str], Detection] = {}


def detect_all(client: ComputeClient, inputs: Sequence[tuple[Path, Params]]) -> list[Detection]:
    """face_detection of every ``(path, form fields)``, submitted together; cached by input bytes and fields."""
    keys = [(file_key(p), json.dumps(dict(params), sort_keys=True)) for p, params in inputs]
    todo = list({k: inp for k, inp in zip(keys, inputs, strict=True) if k not in _DETECTIONS}.items())
    if todo:
        records = run_jobs(client, "face_detection", [inp for _, inp in todo])
        for (key, _), record in zip(todo, records, strict=True):
            _DETECTIONS[key] = read_face_detection(client, record)
    return [_DETECTIONS[k] for k in keys]


def crop_image(data: bytes) -> Image.Image:
    """A crop's bytes: a PNG by magic bytes and by Pillow, fully decoded."""
    assert has_magic(data, "png"), f"face crop is not a PNG: it starts with {data[:8]!r}"
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "PNG", f"face crop has PNG magic bytes but Pillow reads it as {img.format}"
    return img


# -- the clip / dino suite ------------------------------------------------------------------------------------
def reencoded_copies(src: Path, dest: Path) -> list[Path]:
    """Copies of one image made with Pillow: the other format (JPEG <-> PNG), half size, JPEG quality 50."""
    dest.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as img:
        rgb = img.convert("RGB")
    other = dest / (f"{src.stem}_as_png.png" if src.suffix.lower() in {".jpg", ".jpeg"} else f"{src.stem}_as.jpg")
    rgb.save(other, quality=90) if other.suffix == ".jpg" else rgb.save(other)
    half = dest / f"{src.stem}_half.png"
    rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.LANCZOS).save(half)
    low = dest / f"{src.stem}_q50.jpg"
    rgb.save(low, quality=50)
    return [other, half, low]


class ImageEmbeddingSuite:
    """The checks of an image-embedding plugin (PROTOCOL.md §3); subclasses set ``TASK`` and ``DIM``."""

    TASK: ClassVar[str]
    DIM: ClassVar[int]
    #: sources of the related-copies check: a face photo, two other photos and a synthetic image
    FAMILIES: ClassVar[tuple[str, ...]] = ("face_astronaut", "no_face_coffee", "no_face_rocket", "png_800x600")
    #: least gap between the farthest copy of an image and the closest unrelated image (cosine)
    MARGIN: ClassVar[float] = 0.1

    def test_default_job_writes_a_unit_vector_file(
        self, any_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
    ) -> None:
        """No form fields (normalize defaults to true): the callback ends it ``completed``; task_output says
        ``{embedding_dim: DIM, normalized: true}``; the downloaded .npy is float32 [DIM], finite, L2 norm 1."""
        item = cl_media["face_astronaut"]
        record = completed(any_client, self.TASK, item.path)
        expect_task_output(record, self.DIM, True)
        assert "embedding" not in (record.task_output or {}), (
            f"{self.TASK} job {record.job_id}: task_output carries the vector; it belongs in the .npy file only"
        )
        expect_param(record, "input_path", f"input/{item.path.name}")
        expect_param(record, "output_path", f"output/{self.TASK}.npy")
        check_vector(load_npy(any_client, record, tmp_path), self.DIM, normalized=True, what=npy_label(record))

    def test_normalize_false_gives_the_same_direction_unscaled(
        self, compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
    ) -> None:
        """``normalize=false``: task_output ``normalized: false``, params echo false, norm clearly not 1, and
        the vector divided by its norm equals the normalised one (normalising only rescales)."""
        item = cl_media["no_face_rocket"]
        records = run_jobs(
            compute_client, self.TASK, [(item.path, {"normalize": False}), (item.path, {"normalize": True})]
        )
        raw_rec, unit_rec = (assert_completed(r) for r in records)
        for rec, flag in ((raw_rec, False), (unit_rec, True)):
            expect_task_output(rec, self.DIM, flag)
        expect_param(raw_rec, "normalize", False)
        expect_param(unit_rec, "normalize", True)
        raw = check_vector(
            load_npy(compute_client, raw_rec, tmp_path), self.DIM, normalized=False, what=npy_label(raw_rec)
        )
        unit = check_vector(
            load_npy(compute_client, unit_rec, tmp_path), self.DIM, normalized=True, what=npy_label(unit_rec)
        )
        rescaled = raw.astype(np.float64) / np.linalg.norm(raw.astype(np.float64))
        assert np.abs(rescaled - unit).max() < 1e-4, (
            f"jobs {raw_rec.job_id} (normalize=false) and {unit_rec.job_id} (normalize=true): the raw vector divided"
            f" by its norm differs from the normalised one by up to {np.abs(rescaled - unit).max():.2e} (allowed 1e-4)"
        )

    def test_same_bytes_give_the_same_vector(
        self, compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
    ) -> None:
        """The same bytes uploaded twice, once under another name, give the same vector (float rounding only)."""
        item = cl_media["face_hopper"]
        records = run_jobs(
            compute_client, self.TASK, [(item.path, {}), (item.path, {})], filenames=[None, "another name.jpg"]
        )
        first, second = (load_npy(compute_client, assert_completed(r), tmp_path) for r in records)
        ids = f"{self.TASK} jobs {records[0].job_id} and {records[1].job_id} (same bytes of {item.path.name})"
        assert first.shape == second.shape == (self.DIM,), (
            f"{ids}: expected two vectors of shape ({self.DIM},), got {first.shape} and {second.shape}"
        )
        assert np.abs(first - second).max() <= 1e-5, (
            f"{ids}: the vectors differ by up to {np.abs(first - second).max():.2e} (allowed 1e-5)"
        )

    def test_copies_are_closer_than_unrelated_images(
        self, compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
    ) -> None:
        """For each of four images, its JPEG<->PNG, half-size and JPEG-q50 copies (made here with Pillow) are
        closer to it and to each other than any image of another family, by ``MARGIN``; each vector's nearest
        neighbour is in its own family."""
        families: list[list[Path]] = []
        for name in self.FAMILIES:
            src = cl_media[name].path
            families.append([src, *reencoded_copies(src, tmp_path / name)])
        paths = [p for fam in families for p in fam]
        labels = [i for i, fam in enumerate(families) for _ in fam]
        vectors = [e.vector for e in embed_all(compute_client, self.TASK, paths, self.DIM, tmp_path / "npy")]
        sims = np.array([[cosine(a, b) for b in vectors] for a in vectors])
        same = np.equal.outer(labels, labels)
        off_diagonal = ~np.eye(len(paths), dtype=bool)
        least_related = float(sims[same & off_diagonal].min())
        most_unrelated = float(sims[~same].max())
        rows = zip(paths, sims, strict=True)
        table = "\n".join(f"{p.name:>28} " + " ".join(f"{s:6.3f}" for s in row) for p, row in rows)
        assert least_related - most_unrelated >= self.MARGIN, (
            f"least similar copies {least_related:.3f} vs most similar unrelated {most_unrelated:.3f}:\n{table}"
        )
        for i in range(len(paths)):
            nearest = max((j for j in range(len(paths)) if j != i), key=lambda j: sims[i, j])
            assert labels[nearest] == labels[i], f"{paths[i].name}'s nearest is {paths[nearest].name}\n{table}"

    def test_undecodable_inputs_end_in_error(self, any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
        """Truncated JPEG, text named .jpg, empty file: each job ends ``error`` with a message (bounded wait)."""
        check_hostile_inputs_fail(any_client, cl_media, self.TASK)

    @pytest.mark.parametrize("value", ["maybe", "2"])
    def test_a_non_boolean_normalize_is_a_422(
        self, compute_client: ComputeClient, cl_media: MediaCatalogue, value: str
    ) -> None:
        """``normalize`` is a boolean form field: other strings are refused with 422 naming it (no job)."""
        assert_rejected(compute_client, self.TASK, cl_media["face_hopper"].path, {"normalize": value}, "normalize")
