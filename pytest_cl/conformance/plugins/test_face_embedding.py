"""Conformance of ``face_embedding`` (PROTOCOL.md §3: ``normalize`` bool, ``output/face_embedding.npy`` float32
[512], ``task_output.quality_score`` float in [0, 1] or null).

The inputs are what a real pipeline embeds: the aligned 112x112 crops that face_detection writes (downloaded
from its jobs) of five single-face photos: Eileen Collins twice (``face_astronaut`` and its resized, rotated,
re-encoded ``face_astronaut_variant``), Grace Hopper, Franz Kafka and the cameraman; plus the four crops of
the group photo. Identities come from the media manifest. Vectors are read from the downloaded ``.npy`` with
numpy; detections and vectors are cached per input (downloaded data only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cl_client import ComputeClient
from pytest_cl._media import FaceBox, MediaCatalogue
from pytest_cl.conformance._checks import cosine, expect_param, get_field
from pytest_cl.conformance.plugins._ml_helpers import (
    Params,
    assert_completed,
    assert_rejected,
    check_hostile_inputs_fail,
    check_vector,
    completed,
    detect_all,
    embed_all,
    load_npy,
    npy_label,
    run_jobs,
)

pytestmark = [pytest.mark.cl_requires("face_embedding", "face_detection"), pytest.mark.timeout(120)]

TASK = "face_embedding"
DIM = 512
SINGLE = ("face_astronaut", "face_astronaut_variant", "face_hopper", "face_kafka", "face_camera")
#: least gap between the same person's similarity and any two different people's (cosine)
MARGIN = 0.05


def _crops(client: ComputeClient, cl_media: MediaCatalogue, dest: Path) -> dict[str, Path]:
    """The one aligned crop of each single-face photo (face_detection with defaults), written to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, det in zip(SINGLE, detect_all(client, [(cl_media[n].path, {}) for n in SINGLE]), strict=True):
        assert len(det.faces) == 1, f"{det.where}: {len(det.faces)} faces detected on {name}, the manifest says 1"
        path = dest / f"{name}.png"
        path.write_bytes(det.crops[str(get_field(det.faces[0], "file_path", where=f"{det.where} faces[0]"))])
        out[name] = path
    return out


def _group_crops(client: ComputeClient, cl_media: MediaCatalogue, dest: Path) -> dict[str, Path]:
    """The group photo's four crops, named by the identity of the manifest box each detection overlaps."""
    item = cl_media["group_4_faces"]
    det = detect_all(client, [(item.path, {})])[0]
    known = item.face_boxes()
    out: dict[str, Path] = {}
    for i, face in enumerate(det.faces):
        where = f"{det.where} faces[{i}]"
        bbox = get_field(face, "bbox", where=where)
        box = tuple(float(str(get_field(bbox, k, where=f"{where}.bbox"))) for k in ("x1", "y1", "x2", "y2"))
        best: FaceBox = max(known, key=lambda k: k.iou(*box))
        assert best.iou(*box) > 0.3, f"{where}: bbox {box} overlaps no known face of {item.name} (IoU > 0.3)"
        path = dest / f"group_{best.identity}.png"
        path.write_bytes(det.crops[str(get_field(face, "file_path", where=where))])
        out[best.identity] = path
    assert len(out) == item.face_count, (
        f"{det.where}: expected the {item.face_count} known people of {item.name}, the detections match {sorted(out)}"
    )
    return out


# -- the job and its file, both waiting paths --------------------------------------------------------------------
def test_crop_job_writes_a_unit_vector_file(
    any_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """A crop without form fields (normalize defaults to true): the callback ends it ``completed``;
    task_output has ``embedding_dim`` 512, ``normalized`` true and ``quality_score`` in [0, 1] (or null); the
    downloaded .npy is float32 [512], finite, L2 norm 1."""
    crop = _crops(any_client, cl_media, tmp_path)["face_astronaut"]
    record = completed(any_client, TASK, crop)
    out = record.task_output
    assert out is not None and out.get("embedding_dim") == DIM and out.get("normalized") is True, (
        f"{TASK} job {record.job_id}: expected task_output embedding_dim {DIM} and normalized true, got {out}"
    )
    quality = out.get("quality_score")
    assert quality is None or (isinstance(quality, int | float) and 0.0 <= quality <= 1.0), (
        f"{TASK} job {record.job_id}: task_output quality_score {quality!r} is neither null nor in [0, 1]"
    )
    expect_param(record, "output_path", f"output/{TASK}.npy")
    check_vector(load_npy(any_client, record, tmp_path), DIM, normalized=True, what=npy_label(record))


def test_normalize_false_gives_the_same_direction_unscaled(
    compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """``normalize=false``: task_output ``normalized: false``, norm clearly not 1, and the vector divided by
    its norm equals the normalised one."""
    crop = _crops(compute_client, cl_media, tmp_path)["face_hopper"]
    inputs: list[tuple[Path, Params]] = [(crop, {"normalize": False}), (crop, {"normalize": True})]
    raw_rec, unit_rec = (assert_completed(r) for r in run_jobs(compute_client, TASK, inputs))
    for rec, flag in ((raw_rec, False), (unit_rec, True)):
        assert rec.task_output is not None and rec.task_output.get("normalized") is flag, (
            f"{TASK} job {rec.job_id} (normalize={str(flag).lower()}): expected task_output normalized"
            f" {str(flag).lower()}, got {rec.task_output}"
        )
    raw = check_vector(load_npy(compute_client, raw_rec, tmp_path), DIM, normalized=False, what=npy_label(raw_rec))
    unit = check_vector(load_npy(compute_client, unit_rec, tmp_path), DIM, normalized=True, what=npy_label(unit_rec))
    rescaled = raw.astype(np.float64) / np.linalg.norm(raw.astype(np.float64))
    assert np.abs(rescaled - unit).max() < 1e-4, (
        f"jobs {raw_rec.job_id} (normalize=false) and {unit_rec.job_id} (normalize=true): the raw vector divided by"
        f" its norm differs from the normalised one by up to {np.abs(rescaled - unit).max():.2e} (allowed 1e-4)"
    )


def test_same_bytes_give_the_same_vector(
    compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """The same crop uploaded twice, once under another name, gives the same vector (float rounding only)."""
    crop = _crops(compute_client, cl_media, tmp_path)["face_kafka"]
    records = run_jobs(compute_client, TASK, [(crop, {}), (crop, {})], filenames=[None, "other name.png"])
    first, second = (load_npy(compute_client, assert_completed(r), tmp_path) for r in records)
    ids = f"{TASK} jobs {records[0].job_id} and {records[1].job_id} (the same crop bytes)"
    assert first.shape == second.shape == (DIM,), (
        f"{ids}: expected two vectors of shape ({DIM},), got {first.shape} and {second.shape}"
    )
    assert np.abs(first - second).max() <= 1e-5, (
        f"{ids}: the vectors differ by up to {np.abs(first - second).max():.2e} (allowed 1e-5)"
    )


# -- identity ------------------------------------------------------------------------------------------------------
def test_same_person_is_closer_than_different_people(
    compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """Eileen Collins' two photos (resized, rotated, re-encoded) are more similar than any two different people
    among the five crops, by ``MARGIN``; each of her two crops is the other's nearest neighbour."""
    crops = _crops(compute_client, cl_media, tmp_path)
    vectors = [e.vector for e in embed_all(compute_client, TASK, [crops[n] for n in SINGLE], DIM, tmp_path)]
    identity = {n: cl_media[n].fact_str("identity") for n in SINGLE}
    assert identity["face_astronaut"] == identity["face_astronaut_variant"], (
        f"test media: face_astronaut and face_astronaut_variant have different identities {identity}"
    )
    assert cl_media["face_astronaut_variant"].fact_str("same_person_as") == "face_astronaut", (
        "test media: face_astronaut_variant's manifest entry does not say same_person_as face_astronaut"
    )
    sims = {
        (a, b): cosine(va, vb)
        for a, va in zip(SINGLE, vectors, strict=True)
        for b, vb in zip(SINGLE, vectors, strict=True)
    }
    same = sims["face_astronaut", "face_astronaut_variant"]
    different = {(a, b): s for (a, b), s in sims.items() if a < b and identity[a] != identity[b]}
    closest = max(different, key=lambda k: different[k])
    assert same - different[closest] >= MARGIN, (
        f"{TASK}: the same person's two crops have cosine {same:.3f}, two different people {closest}"
        f" {different[closest]:.3f}; expected the same person ahead by at least {MARGIN}"
    )
    for a, b in (("face_astronaut", "face_astronaut_variant"), ("face_astronaut_variant", "face_astronaut")):
        nearest = max((n for n in SINGLE if n != a), key=lambda n: sims[a, n])
        assert nearest == b, (
            f"{TASK}: the nearest crop to {a} is {nearest} (cosine {sims[a, nearest]:.3f}), expected {b} (same person,"
            f" cosine {sims[a, b]:.3f})"
        )


def test_group_faces_are_recognised_from_single_photos(
    compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """Each of the four people in the group photo (identified by the manifest box its detection overlaps) is
    nearest to the single photo of the same person."""
    crops = _crops(compute_client, cl_media, tmp_path)
    singles = {cl_media[n].fact_str("identity"): crops[n] for n in SINGLE if n != "face_astronaut_variant"}
    group = _group_crops(compute_client, cl_media, tmp_path)
    names = sorted(singles)
    embedded = embed_all(compute_client, TASK, [singles[n] for n in names] + [group[n] for n in names], DIM, tmp_path)
    single_vecs = dict(zip(names, (e.vector for e in embedded[: len(names)]), strict=True))
    for who, emb in zip(names, embedded[len(names) :], strict=True):
        scores = {n: cosine(emb.vector, v) for n, v in single_vecs.items()}
        best = max(scores, key=lambda n: scores[n])
        assert best == who, (
            f"{TASK}: the group photo's face of {who} is nearest to the single photo of {best}, expected {who}"
            f" (cosines {scores})"
        )


# -- quality_score ---------------------------------------------------------------------------------------------
def test_quality_score_is_in_unit_interval_and_drops_when_blurred(
    compute_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path
) -> None:
    """Every crop's ``quality_score`` is in [0, 1] (or null, as the protocol allows); a copy blurred with
    Pillow (Gaussian, radius 4) scores lower than the sharp crop (a sharpness measure)."""
    crops = _crops(compute_client, cl_media, tmp_path)
    blurred = tmp_path / "blurred.png"
    with Image.open(crops["face_hopper"]) as img:
        img.filter(ImageFilter.GaussianBlur(4)).save(blurred)
    paths = [crops[n] for n in SINGLE] + [blurred]
    scores = [e.task_output.get("quality_score") for e in embed_all(compute_client, TASK, paths, DIM, tmp_path)]
    for path, score in zip(paths, scores, strict=True):
        assert score is None or (isinstance(score, int | float) and 0.0 <= score <= 1.0), (
            f"{TASK} of {path.name}: task_output quality_score {score!r} is neither null nor in [0, 1]"
        )
    sharp, soft = scores[SINGLE.index("face_hopper")], scores[-1]
    if sharp is not None and soft is not None:
        assert soft < sharp, (
            f"{TASK}: the blurred crop's quality_score {soft} is not lower than the sharp crop's {sharp}"
        )


# -- failures ------------------------------------------------------------------------------------------------------
def test_undecodable_inputs_end_in_error(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Truncated JPEG, text named .jpg, empty file: each job ends ``error`` with a message (bounded wait)."""
    check_hostile_inputs_fail(any_client, cl_media, TASK)


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_non_boolean_normalize_is_a_422(compute_client: ComputeClient, cl_media: MediaCatalogue, value: str) -> None:
    """``normalize`` is a boolean form field: other strings are refused with 422 naming it (no job)."""
    assert_rejected(compute_client, TASK, cl_media["face_hopper"].path, {"normalize": value}, "normalize")
