"""Conformance of ``face_detection`` (PROTOCOL.md §3, §3.2: ``confidence_threshold`` and ``nms_threshold`` floats in
[0, 1], ``output/face_detection.json``, aligned 112x112 crops ``faces/face_<i>.png``).

Ground truth is the media manifest: face counts (single, group of 4, none), rough face boxes (about +-0.05,
so matched by IoU > 0.3) with identities, image sizes; the grey or colour source of each face (Kafka and the
cameraman are greyscale photos) tells whether a crop shows the face it claims. Outputs are read as files:
the JSON with ``json``, every crop with Pillow. Detections are cached per input and parameters (downloaded
data only), so the property tests share a handful of jobs.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl_client import ComputeClient
from pytest_cl._media import FaceBox, MediaCatalogue
from pytest_cl.conformance._checks import expect, expect_param, get_field
from pytest_cl.conformance.plugins._ml_helpers import (
    Detection,
    Params,
    assert_rejected,
    box_defect,
    check_hostile_inputs_fail,
    crop_image,
    detect_all,
    landmark_defect,
    misplaced_box,
    read_face_detection,
    run_job,
)

pytestmark = [pytest.mark.cl_requires("face_detection"), pytest.mark.timeout(120)]

TASK = "face_detection"
SINGLE = ("face_astronaut", "face_camera", "face_hopper", "face_kafka", "face_astronaut_variant")
WITH_FACES = (*SINGLE, "group_4_faces")
NO_FACE = ("no_face_coffee", "no_face_rocket")
ALL = (*WITH_FACES, *NO_FACE)
#: identities whose source photo is greyscale (their crops have R = G = B up to JPEG noise)
GREY_IDENTITIES = {"franz_kafka", "skimage_cameraman"}
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
#: least IoU between a detected box and the manifest's rough box of the same face
MIN_IOU = 0.3
CROP_SIZE = (112, 112)


def _defaults(client: ComputeClient, cl_media: MediaCatalogue) -> dict[str, Detection]:
    """Every face / no-face image detected with the server's defaults (no form fields), cached."""
    results = detect_all(client, [(cl_media[name].path, {}) for name in ALL])
    return dict(zip(ALL, results, strict=True))


def _where(det: Detection, face: dict[str, object]) -> str:
    """How a failure names one face: ``"face_detection job <id>: output/face_detection.json faces[i]"``."""
    index = next((i for i, f in enumerate(det.faces) if f is face), "?")
    return f"{det.where} faces[{index}]"


def _number(value: object, what: str) -> float:
    assert isinstance(value, int | float) and not isinstance(value, bool), f"{what} is not a number: {value!r}"
    return float(value)


def _box(det: Detection, face: dict[str, object]) -> tuple[float, float, float, float]:
    where = _where(det, face)
    bbox = get_field(face, "bbox", where=where)
    return tuple(
        _number(get_field(bbox, k, where=f"{where}.bbox"), f"{where}.bbox.{k}") for k in ("x1", "y1", "x2", "y2")
    )  # type: ignore[return-value]


def _confidence(det: Detection, face: dict[str, object]) -> float:
    where = _where(det, face)
    return _number(get_field(face, "confidence", where=where), f"{where}.confidence")


def _point(det: Detection, face: dict[str, object], name: str) -> tuple[float, float]:
    where = _where(det, face)
    marks = get_field(face, "landmarks", where=where)
    point = get_field(marks, name, where=f"{where}.landmarks")
    assert isinstance(point, list) and len(point) == 2, f"{where}.landmarks.{name} is not an [x, y] pair: {point!r}"
    return _number(point[0], f"{where}.landmarks.{name}[0]"), _number(point[1], f"{where}.landmarks.{name}[1]")


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return FaceBox(*a, identity="").iou(*b)


def _match(det: Detection, known: tuple[FaceBox, ...]) -> list[FaceBox]:
    """The manifest box of each detected face (best IoU); asserts IoU > MIN_IOU and a one-to-one match."""
    matched: list[FaceBox] = []
    for i, face in enumerate(det.faces):
        box = _box(det, face)
        best = max(known, key=lambda k: k.iou(*box))
        if best.iou(*box) <= MIN_IOU:
            named = misplaced_box(box, lambda b: max(k.iou(*b) for k in known), MIN_IOU)
            said = f": the bbox has {named}" if named else ""
            raise AssertionError(
                f"{det.where}: faces[{i}] bbox {box} overlaps no known face (best {best.identity},"
                f" IoU {best.iou(*box):.2f}, needed > {MIN_IOU}){said}"
            )
        matched.append(best)
    identities = [m.identity for m in matched]
    assert len(set(identities)) == len(identities), f"{det.where}: two detections claim the same face: {identities}"
    return matched


def _faces_of(det: Detection, threshold: float) -> set[tuple[float, ...]]:
    return {tuple(round(c, 3) for c in _box(det, f)) for f in det.faces if _confidence(det, f) >= threshold}


# -- the job, its files, both waiting paths --------------------------------------------------------------------
def test_group_photo_job_and_files(any_client: ComputeClient, cl_media: MediaCatalogue, tmp_path: Path) -> None:
    """The group photo with 0.7 / 0.4 sent explicitly: the callback ends it ``completed``; params echo the
    fields; ``output/face_detection.json`` (downloaded) equals ``task_output``, has 4 faces and the image size,
    and the same faces as a job without fields (the defaults are 0.7 / 0.4); every crop downloads to a file
    that is a 112x112 PNG."""
    item = cl_media["group_4_faces"]
    record = run_job(any_client, TASK, item.path, {"confidence_threshold": 0.7, "nms_threshold": 0.4})
    det = read_face_detection(any_client, record)
    expect_param(record, "confidence_threshold", pytest.approx(0.7))
    expect_param(record, "nms_threshold", pytest.approx(0.4))
    expect_param(record, "output_path", "output/face_detection.json")
    assert det.data == record.task_output, f"{det.where} differs from the job's task_output"
    expect(det.get("num_faces"), 4, f"{det.where}: 'num_faces' of {item.name} (4 people)")
    expect(len(det.faces), 4, f"{det.where}: number of entries in 'faces' of {item.name} (4 people)")
    expect((det.get("image_width"), det.get("image_height")), (1600, 500), f"{det.where}: image_width, image_height")
    default = _defaults(any_client, cl_media)["group_4_faces"]
    assert [_box(default, f) for f in default.faces] == [_box(det, f) for f in det.faces], (
        f"{det.where} (thresholds 0.7 / 0.4 sent) and {default.where} (no fields) found different boxes:"
        " the defaults are not 0.7 / 0.4"
    )
    for i, face in enumerate(det.faces):
        rel = get_field(face, "file_path", where=f"{det.where} faces[{i}]")
        assert isinstance(rel, str), f"{det.where} faces[{i}].file_path is not a string: {rel!r}"
        written = any_client.download_job_file(record.job_id, rel, tmp_path / f"face_{i}.png")
        with Image.open(written) as img:
            expect((img.format, img.size), ("PNG", CROP_SIZE), f"face_detection job {record.job_id}: crop {rel}")


# -- counts, sizes, boxes, landmarks ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_face_count_and_image_size(compute_client: ComputeClient, cl_media: MediaCatalogue, name: str) -> None:
    """Exactly the manifest's number of faces (1, 4 or 0) at the defaults; ``num_faces == len(faces)``;
    ``image_width/height`` are the file's size (manifest and Pillow); the JSON file equals ``task_output``."""
    item = cl_media[name]
    det = _defaults(compute_client, cl_media)[name]
    assert len(det.faces) == item.face_count, (
        f"{det.where}: {len(det.faces)} faces on {name}, expected {item.face_count}"
    )
    expect(det.get("num_faces"), len(det.faces), f"{det.where}: 'num_faces' (the length of its 'faces' list)")
    with Image.open(item.path) as img:
        size = img.size
    expect(size, (item.fact_int("width"), item.fact_int("height")), f"test media {name}: size vs the manifest")
    expect((det.get("image_width"), det.get("image_height")), size, f"{det.where}: image_width, image_height of {name}")
    assert det.data == det.record.task_output, f"{det.where} differs from the job's task_output"


@pytest.mark.parametrize("name", WITH_FACES)
def test_boxes_are_ordered_and_on_the_known_faces(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str
) -> None:
    """Each bbox has 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, overlaps a manifest face box (IoU > 0.3), one
    detection per known face; each confidence is in [0.7 (the default threshold), 1]."""
    det = _defaults(compute_client, cl_media)[name]
    size = (cl_media[name].fact_int("width"), cl_media[name].fact_int("height"))
    for face in det.faces:
        defect = box_defect(_box(det, face), size)
        assert defect is None, f"{_where(det, face)}: {defect}"
        confidence = _confidence(det, face)
        assert 0.7 <= confidence <= 1.0, (
            f"{_where(det, face)}: confidence {confidence} outside [0.7 (the default threshold), 1]"
        )
    matched = _match(det, cl_media[name].face_boxes())
    expect(
        sorted({m.identity for m in matched}),
        sorted({k.identity for k in cl_media[name].face_boxes()}),
        f"{det.where}: the known faces of {name} that were found",
    )


@pytest.mark.parametrize("name", WITH_FACES)
def test_landmarks_inside_the_box_in_anatomical_order(
    compute_client: ComputeClient, cl_media: MediaCatalogue, name: str
) -> None:
    """The five landmarks lie in their bbox (5 % slack: landmarks are not clamped); both eyes above the nose
    tip, the nose tip above both mouth corners; the person's right eye and mouth corner on the image's left."""
    det = _defaults(compute_client, cl_media)[name]
    size = (cl_media[name].fact_int("width"), cl_media[name].fact_int("height"))
    for i, face in enumerate(det.faces):
        pts = {n: _point(det, face, n) for n in LANDMARKS}
        defect = landmark_defect(_box(det, face), pts, size)
        assert defect is None, f"{det.where} faces[{i}]: {defect}"


def test_crops_are_112px_pngs_of_their_own_face(compute_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Every face's ``file_path`` is ``faces/face_<i>.png`` and downloads as a 112x112 PNG; the crop shows the
    face its box claims: grey for the greyscale photos (Kafka, the cameraman), coloured for the others."""
    detections = _defaults(compute_client, cl_media)
    for name in WITH_FACES:
        det = detections[name]
        paths = [get_field(f, "file_path", where=_where(det, f)) for f in det.faces]
        expect(paths, [f"faces/face_{i}.png" for i in range(len(det.faces))], f"{det.where}: file_path of each face")
        for face, known in zip(det.faces, _match(det, cl_media[name].face_boxes()), strict=True):
            crop = f"face_detection job {det.record.job_id} on {name}: crop {face['file_path']} ({known.identity})"
            img = crop_image(det.crops[str(face["file_path"])])
            expect(img.size, CROP_SIZE, f"{crop}: size")
            rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
            chroma = float(np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean())
            assert rgb.std() > 10, f"{crop} is flat (pixel standard deviation {rgb.std():.1f}, expected > 10)"
            if known.identity in GREY_IDENTITIES:
                assert chroma < 4, f"{crop} has colour ({chroma:.1f}) though the source photo is greyscale"
            else:
                assert chroma > 15, f"{crop} is grey ({chroma:.1f}) though the source photo is in colour"


# -- parameters ------------------------------------------------------------------------------------------------
def test_a_higher_confidence_threshold_never_finds_more(
    compute_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """On the group photo and the rocket at thresholds 0, 0.3, 0.7, 0.95: every confidence >= its threshold;
    the faces found at a higher threshold are a subset of those at a lower one (so never more); and lowering
    the threshold to 0 reveals candidates the default hides (the parameter has an effect)."""
    thresholds = (0.0, 0.3, 0.7, 0.95)
    names = ("group_4_faces", "no_face_rocket")
    inputs: list[tuple[Path, Params]] = [
        (cl_media[n].path, {"confidence_threshold": t}) for n in names for t in thresholds
    ]
    results = iter(detect_all(compute_client, inputs))
    found: dict[tuple[str, float], set[tuple[float, ...]]] = {}
    for name in names:
        for t in thresholds:
            det = next(results)
            expect_param(det.record, "confidence_threshold", pytest.approx(t))
            below = [c for c in (_confidence(det, f) for f in det.faces) if c < t]
            assert not below, f"{det.where} on {name}: confidence_threshold {t} but faces with confidence {below}"
            found[name, t] = _faces_of(det, 0.0)
        for lo, hi in itertools.pairwise(thresholds):
            assert found[name, hi] <= found[name, lo], (
                f"{name}: faces found at confidence_threshold {hi} are not among those at {lo}:"
                f" {sorted(found[name, hi] - found[name, lo])}"
            )
    at_zero, at_default = (sum(len(found[n, t]) for n in names) for t in (0.0, 0.7))
    assert at_zero > at_default, (
        f"confidence_threshold has no effect: {at_zero} faces at 0 and {at_default} at 0.7 on {', '.join(names)}"
    )


def test_nms_threshold_bounds_the_overlap_of_kept_faces(
    compute_client: ComputeClient, cl_media: MediaCatalogue
) -> None:
    """At confidence 0 on the group photo, ``nms_threshold`` 0, 0.4 and 1 are accepted; no two kept boxes
    overlap more than the threshold (IoU); 1 suppresses nothing, so it keeps more than 0 does."""
    item = cl_media["group_4_faces"]
    values = (0.0, 0.4, 1.0)
    inputs: list[tuple[Path, Params]] = [(item.path, {"confidence_threshold": 0.0, "nms_threshold": v}) for v in values]
    counts: dict[float, int] = {}
    for value, det in zip(values, detect_all(compute_client, inputs), strict=True):
        expect_param(det.record, "nms_threshold", pytest.approx(value))
        boxes = [_box(det, f) for f in det.faces]
        for a, b in itertools.combinations(boxes, 2):
            assert _iou(a, b) <= value + 0.01, (
                f"{det.where}: nms_threshold {value} but boxes {a} and {b} overlap with IoU {_iou(a, b):.3f}"
            )
        counts[value] = len(boxes)
    assert counts[1.0] >= max(counts.values()), (
        f"nms_threshold 1 (suppress nothing) kept fewer faces than a lower threshold: faces per threshold {counts}"
    )
    assert counts[1.0] > counts[0.0], f"nms_threshold has no effect: {counts}"


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("nms_threshold", 1.5),
        ("nms_threshold", -0.1),
        ("nms_threshold", "abc"),
        ("confidence_threshold", 1.01),
        ("confidence_threshold", -0.5),
    ],
)
def test_out_of_range_thresholds_are_a_422(
    compute_client: ComputeClient, cl_media: MediaCatalogue, field_name: str, value: object
) -> None:
    """Thresholds are floats in [0, 1]: outside (or not a number), sent raw, the server answers 422 naming the
    field, and no job is created."""
    assert_rejected(compute_client, TASK, cl_media["face_hopper"].path, {field_name: value}, field_name)


# -- failures --------------------------------------------------------------------------------------------------
def test_undecodable_inputs_end_in_error(any_client: ComputeClient, cl_media: MediaCatalogue) -> None:
    """Truncated JPEG, text named .jpg, empty file: each job ends ``error`` with a message (bounded wait)."""
    check_hostile_inputs_fail(any_client, cl_media, TASK)
