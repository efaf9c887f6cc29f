"""face_embedding backend: dlib ResNet descriptor lifted to 512-d, called directly."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from plugin_test_images import encode, rgb
from skimage import data

from cl_compute.plugins import get_plugin
from cl_compute.plugins.base import ParamError, PluginError, TaskContext
from cl_compute.plugins.face_detection import FaceDetectionPlugin
from cl_compute.plugins.face_embedding import FaceEmbeddingPlugin, orthonormal_lift


@pytest.fixture(scope="module")
def fe_plugin() -> FaceEmbeddingPlugin:
    plugin = FaceEmbeddingPlugin()
    plugin.load()
    return plugin


@pytest.fixture(scope="module")
def fe_detector() -> FaceDetectionPlugin:
    plugin = FaceDetectionPlugin()
    plugin.load()
    return plugin


def _ctx(root: Path, payload: bytes, name: str, params: Mapping[str, object], seen: list[int]) -> TaskContext:
    job_dir = root
    for sub in ("input", "output", "faces"):
        (job_dir / sub).mkdir(parents=True, exist_ok=True)
    (job_dir / "input" / name).write_bytes(payload)
    return TaskContext(
        job_id="00000000-0000-4000-8000-0000000000fe",
        job_dir=job_dir,
        input_path=job_dir / "input" / name,
        params={**params, "input_path": f"input/{name}"},
        progress=seen.append,
    )


def _embed(
    plugin: FaceEmbeddingPlugin,
    root: Path,
    payload: bytes,
    form: Mapping[str, str] | None = None,
    name: str = "face.png",
) -> tuple[np.ndarray, dict[str, object], list[int], Path]:
    params = plugin.parse_params(dict(form or {}), name)
    seen: list[int] = []
    ctx = _ctx(root, payload, name, params, seen)
    output = plugin.run(ctx)
    out_file = ctx.output(str(params["output_path"]))
    return np.load(out_file), output, seen, out_file


def _crop(detector: FaceDetectionPlugin, root: Path, payload: bytes) -> bytes:
    """Run face_detection and return the bytes of faces/face_0.png (the upstream workflow)."""
    params = detector.parse_params({}, "photo.png")
    ctx = _ctx(root, payload, "photo.png", params, [])
    result = detector.run(ctx)
    assert result["num_faces"] == 1
    return (root / "faces" / "face_0.png").read_bytes()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def fe_crops(fe_detector: FaceDetectionPlugin, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Aligned crops of the astronaut, three altered copies of her photo, and the cameraman."""
    astro = Image.fromarray(rgb(data.astronaut()))
    sources = {
        "astronaut": encode(astro),
        "astronaut_jpeg_q30": encode(astro, "JPEG", quality=30),
        "astronaut_half": encode(astro.resize((256, 256), Image.Resampling.LANCZOS), "JPEG", quality=90),
        "astronaut_rot5": encode(astro.rotate(5, Image.Resampling.BICUBIC)),
        "cameraman": encode(Image.fromarray(data.camera())),
        "cameraman_jpeg": encode(Image.fromarray(data.camera()), "JPEG", quality=60),
    }
    root = tmp_path_factory.mktemp("fe_crops")
    return {name: _crop(fe_detector, root / name, payload) for name, payload in sources.items()}


@pytest.fixture(scope="module")
def fe_vectors(
    fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    root = tmp_path_factory.mktemp("fe_vectors")
    return {name: _embed(fe_plugin, root / name, crop)[0] for name, crop in fe_crops.items()}


# -- parse_params ------------------------------------------------------------------------------------------


def test_registry_resolves_the_plugin() -> None:
    assert isinstance(get_plugin("face_embedding"), FaceEmbeddingPlugin)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("FALSE", False), ("1", True), ("0", False), ("Yes", True), ("no", False), ("", True)],
)
def test_parse_params_normalize(raw: str, expected: bool) -> None:
    assert FaceEmbeddingPlugin().parse_params({"normalize": raw}, "f.png") == {
        "normalize": expected,
        "output_path": "output/face_embedding.npy",
    }


def test_parse_params_default() -> None:
    assert FaceEmbeddingPlugin().parse_params({}, "f.png")["normalize"] is True


@pytest.mark.parametrize("raw", ["maybe", "2", "truee", "-1"])
def test_parse_params_rejects_bad_bool(raw: str) -> None:
    with pytest.raises(ParamError) as info:
        FaceEmbeddingPlugin().parse_params({"normalize": raw}, "f.png")
    assert info.value.field == "normalize"


# -- vectors -----------------------------------------------------------------------------------------------


def test_output_file_and_task_output(
    fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes], tmp_path: Path
) -> None:
    vec, output, seen, out_file = _embed(fe_plugin, tmp_path, fe_crops["astronaut"])
    assert out_file == tmp_path / "output" / "face_embedding.npy"
    assert vec.dtype == np.float32
    assert vec.shape == (512,)
    assert np.all(np.isfinite(vec))
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    assert set(output) == {"embedding_dim", "normalized", "quality_score"}
    assert output["embedding_dim"] == 512
    assert output["normalized"] is True
    quality = output["quality_score"]
    assert isinstance(quality, float)
    assert 0.0 <= quality <= 1.0
    assert seen[-1] == 100


def test_unnormalized_vector(fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes], tmp_path: Path) -> None:
    raw, output, _, _ = _embed(fe_plugin, tmp_path / "raw", fe_crops["astronaut"], {"normalize": "false"})
    unit, _, _, _ = _embed(fe_plugin, tmp_path / "unit", fe_crops["astronaut"])
    assert output["normalized"] is False
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 0.1
    assert _cos(raw, unit) == pytest.approx(1.0, abs=1e-6)


def test_same_bytes_same_vector(fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes], tmp_path: Path) -> None:
    _, _, _, first = _embed(fe_plugin, tmp_path / "a", fe_crops["cameraman"])
    _, _, _, second = _embed(FaceEmbeddingPlugin(), tmp_path / "b", fe_crops["cameraman"])  # fresh instance
    assert first.read_bytes() == second.read_bytes()


def test_same_person_closer_than_different_people(fe_vectors: dict[str, np.ndarray]) -> None:
    ref = fe_vectors["astronaut"]
    same = [_cos(ref, fe_vectors[k]) for k in ("astronaut_jpeg_q30", "astronaut_half", "astronaut_rot5")]
    different = [
        _cos(fe_vectors[a], fe_vectors[b])
        for a in fe_vectors
        if a.startswith("astronaut")
        for b in ("cameraman", "cameraman_jpeg")
    ]
    assert min(same) > 0.97
    assert max(different) < 0.9
    assert min(same) - max(different) > 0.1
    assert _cos(fe_vectors["cameraman"], fe_vectors["cameraman_jpeg"]) > 0.97


def test_dlib_distance_rule_holds(fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes]) -> None:
    """In dlib's own 128-d space: same person < 0.6 Euclidean distance, different people > 0.6."""
    desc = {k: fe_plugin.describe(np.asarray(Image.open(io.BytesIO(v)).convert("RGB"))) for k, v in fe_crops.items()}
    assert np.linalg.norm(desc["astronaut"] - desc["astronaut_rot5"]) < 0.6
    assert np.linalg.norm(desc["astronaut"] - desc["cameraman"]) > 0.6


def test_orthonormal_lift_preserves_geometry(fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes]) -> None:
    q = orthonormal_lift()
    assert q.shape == (512, 128)
    np.testing.assert_allclose(q.T @ q, np.eye(128), atol=1e-10)
    np.testing.assert_array_equal(q, orthonormal_lift())  # deterministic
    a = fe_plugin.describe(np.asarray(Image.open(io.BytesIO(fe_crops["astronaut"])).convert("RGB")))
    b = fe_plugin.describe(np.asarray(Image.open(io.BytesIO(fe_crops["cameraman"])).convert("RGB")))
    assert a.shape == (128,)
    assert _cos(q @ a, q @ b) == pytest.approx(_cos(a, b), abs=1e-12)
    assert np.linalg.norm(q @ a) == pytest.approx(np.linalg.norm(a), abs=1e-12)


def test_full_photo_is_detected_and_aligned(
    fe_plugin: FaceEmbeddingPlugin, fe_vectors: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """A non-112x112 input goes through MTCNN + alignment: it matches the crop of the same photo."""
    vec, output, _, _ = _embed(fe_plugin, tmp_path, encode(data.astronaut()), name="photo.png")
    assert _cos(vec, fe_vectors["astronaut"]) > 0.97
    assert _cos(vec, fe_vectors["cameraman"]) < 0.9
    assert 0.0 <= output["quality_score"] <= 1.0  # type: ignore[operator]


def test_no_face_falls_back_to_resize(fe_plugin: FaceEmbeddingPlugin, tmp_path: Path) -> None:
    vec, output, _, _ = _embed(fe_plugin, tmp_path, encode(data.coffee(), "JPEG"), name="coffee.jpg")
    assert vec.shape == (512,)
    assert np.all(np.isfinite(vec))
    assert output["normalized"] is True


def test_quality_score_tracks_sharpness(
    fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes], tmp_path: Path
) -> None:
    sharp = Image.open(io.BytesIO(fe_crops["astronaut"])).convert("RGB")
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    flat = Image.new("RGB", (112, 112), (120, 120, 120))
    q_sharp = _embed(fe_plugin, tmp_path / "s", encode(sharp))[1]["quality_score"]
    q_blur = _embed(fe_plugin, tmp_path / "b", encode(blurred))[1]["quality_score"]
    q_flat = _embed(fe_plugin, tmp_path / "f", encode(flat))[1]["quality_score"]
    assert isinstance(q_sharp, float)
    assert isinstance(q_blur, float)
    assert 0.0 <= q_blur < q_sharp <= 1.0
    assert q_flat == 0.0


def test_any_mode_input(fe_plugin: FaceEmbeddingPlugin, fe_crops: dict[str, bytes], tmp_path: Path) -> None:
    crop = Image.open(io.BytesIO(fe_crops["astronaut"]))
    base = _embed(fe_plugin, tmp_path / "rgb", fe_crops["astronaut"])[0]
    for mode in ("RGBA", "L", "P"):
        vec = _embed(fe_plugin, tmp_path / mode, encode(crop.convert(mode)))[0]
        assert vec.shape == (512,)
        if mode == "RGBA":
            assert _cos(vec, base) > 0.999


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "empty"), (b"GIF89a-not-really", "not an image|corrupt"), (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not")],
    ids=["zero-byte", "fake-gif", "fake-png"],
)
def test_bad_inputs(fe_plugin: FaceEmbeddingPlugin, tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(PluginError, match=f"(?i){message}"):
        _embed(fe_plugin, tmp_path, payload)
    assert not (tmp_path / "output" / "face_embedding.npy").exists()


def test_decompression_bomb_refused(
    fe_plugin: FaceEmbeddingPlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_COMPUTE_MAX_IMAGE_PIXELS", "5000")
    with pytest.raises(PluginError, match=r"(?i)decompression"):
        _embed(fe_plugin, tmp_path, encode(Image.new("RGB", (100, 100))))


def test_details_are_plain(fe_plugin: FaceEmbeddingPlugin) -> None:
    assert "dlib" in fe_plugin.details["model"]
    assert "NOT ArcFace" in fe_plugin.details["model"]
    assert fe_plugin.details["model_file"].endswith("dlib_face_recognition_resnet_model_v1.dat")
