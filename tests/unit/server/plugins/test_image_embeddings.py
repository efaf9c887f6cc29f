"""clip_embedding and dino_embedding backends (one shared body, two specs): the stand-in descriptor (default)
and the ONNX Runtime path, called directly. Every test runs for both plugins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plugin_test_images import encode, rgb
from skimage import data

from cl_compute.plugins import get_plugin
from cl_compute.plugins._embedding import ImageEmbeddingPlugin
from cl_compute.plugins.base import BackendUnavailable, ParamError, Plugin, PluginError, TaskContext
from cl_compute.plugins.clip_embedding import ClipEmbeddingPlugin
from cl_compute.plugins.dino_embedding import DinoEmbeddingPlugin


@dataclass(frozen=True)
class Case:
    plugin: type[ImageEmbeddingPlugin]
    task: str
    dim: int
    env: str
    output: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: Image.Resampling
    not_name: str


CLIP = Case(
    ClipEmbeddingPlugin,
    "clip_embedding",
    512,
    "CL_COMPUTE_CLIP_ONNX",
    "output/clip_embedding.npy",
    (0.48145466, 0.4578275, 0.40821073),
    (0.26862954, 0.26130258, 0.27577711),
    Image.Resampling.BICUBIC,
    "NOT CLIP",
)
DINO = Case(
    DinoEmbeddingPlugin,
    "dino_embedding",
    384,
    "CL_COMPUTE_DINO_ONNX",
    "output/dino_embedding.npy",
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
    Image.Resampling.BILINEAR,
    "NOT DINOv2",
)


@pytest.fixture(scope="module", params=[CLIP, DINO], ids=lambda c: c.task)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.fixture(scope="module")
def emb_plugin(case: Case) -> ImageEmbeddingPlugin:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(case.env, raising=False)
        plugin = case.plugin()
        plugin.load()
    return plugin


def _embed(
    plugin: Plugin,
    root: Path,
    payload: bytes,
    form: Mapping[str, str] | None = None,
    name: str = "image.png",
) -> tuple[np.ndarray, dict[str, object], list[int], Path]:
    params = plugin.parse_params(dict(form or {}), name)
    for sub in ("input", "output"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "input" / name).write_bytes(payload)
    seen: list[int] = []
    ctx = TaskContext(
        job_id="00000000-0000-4000-8000-00000000c11b",
        job_dir=root,
        input_path=root / "input" / name,
        params={**params, "input_path": f"input/{name}"},
        progress=seen.append,
    )
    output = plugin.run(ctx)
    out_file = ctx.output(str(params["output_path"]))
    return np.load(out_file), output, seen, out_file


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field")


def _variants(name: str) -> dict[str, bytes]:
    img = Image.fromarray(rgb(getattr(data, name)()))
    return {
        "png": encode(img),
        "jpeg_q30": encode(img, "JPEG", quality=30),
        "jpeg_q90": encode(img, "JPEG", quality=90),
        "half": encode(img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)),
        "rot5": encode(img.rotate(5, Image.Resampling.BICUBIC)),
    }


@pytest.fixture(scope="module")
def emb_vectors(
    emb_plugin: ImageEmbeddingPlugin, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], np.ndarray]:
    root = tmp_path_factory.mktemp("emb_vectors")
    out: dict[tuple[str, str], np.ndarray] = {}
    for name in SOURCES:
        for variant, payload in _variants(name).items():
            out[name, variant] = _embed(emb_plugin, root / f"{name}-{variant}", payload)[0]
    return out


# -- parse_params ------------------------------------------------------------------------------------------


def test_registry_resolves_the_plugin(case: Case) -> None:
    assert isinstance(get_plugin(case.task), case.plugin)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("False", False), ("1", True), ("0", False), ("YES", True), ("no", False), ("", True)],
)
def test_parse_params_normalize(case: Case, raw: str, expected: bool) -> None:
    assert case.plugin().parse_params({"normalize": raw, "other": "ignored"}, "a.jpg") == {
        "normalize": expected,
        "output_path": case.output,
    }
    assert case.plugin().parse_params({}, "a.jpg")["normalize"] is True


@pytest.mark.parametrize("raw", ["maybe", "2", "t r u e", "none"])
def test_parse_params_rejects_bad_bool(case: Case, raw: str) -> None:
    with pytest.raises(ParamError) as info:
        case.plugin().parse_params({"normalize": raw}, "a.jpg")
    assert info.value.field == "normalize"


# -- the stand-in descriptor -------------------------------------------------------------------------------


def test_vector_file_and_task_output(case: Case, emb_plugin: ImageEmbeddingPlugin, tmp_path: Path) -> None:
    vec, output, seen, out_file = _embed(emb_plugin, tmp_path, encode(data.astronaut()))
    assert out_file == tmp_path / case.output
    assert output == {"embedding_dim": case.dim, "normalized": True}
    assert vec.dtype == np.float32
    assert vec.shape == (case.dim,)
    assert np.all(np.isfinite(vec))
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    assert seen[-1] == 100
    assert seen == sorted(seen)


def test_unnormalized_norm_is_not_one(case: Case, emb_plugin: ImageEmbeddingPlugin, tmp_path: Path) -> None:
    payload = encode(data.coffee())
    raw, output, _, _ = _embed(emb_plugin, tmp_path / "raw", payload, {"normalize": "false"})
    unit, _, _, _ = _embed(emb_plugin, tmp_path / "unit", payload)
    assert output == {"embedding_dim": case.dim, "normalized": False}
    assert np.linalg.norm(raw) > 5.0
    assert _cos(raw, unit) == pytest.approx(1.0, abs=1e-6)


def test_same_bytes_same_vector(case: Case, emb_plugin: ImageEmbeddingPlugin, tmp_path: Path) -> None:
    payload = encode(data.chelsea(), "JPEG", quality=80)
    _, _, _, first = _embed(emb_plugin, tmp_path / "a", payload)
    fresh = case.plugin()
    fresh.load()
    _, _, _, second = _embed(fresh, tmp_path / "b", payload)
    assert first.read_bytes() == second.read_bytes()


def test_near_duplicates_close_unrelated_far(emb_vectors: dict[tuple[str, str], np.ndarray]) -> None:
    near = {
        (name, variant): _cos(emb_vectors[name, "png"], emb_vectors[name, variant])
        for name in SOURCES
        for variant in ("jpeg_q30", "jpeg_q90", "half", "rot5")
    }
    unrelated = {
        (a, b): _cos(emb_vectors[a, "png"], emb_vectors[b, "png"])
        for i, a in enumerate(SOURCES)
        for b in SOURCES[i + 1 :]
    }
    # Re-encoding and resizing hardly move the vector; a 5° rotation moves it a little.
    assert min(v for (_, variant), v in near.items() if variant != "rot5") > 0.95
    assert min(v for (name, variant), v in near.items() if variant == "rot5" and name == "astronaut") > 0.88
    assert min(near.values()) > 0.8
    assert max(unrelated.values()) < 0.6
    # Every near-duplicate of an image is closer to it than any unrelated image is to it, by a margin.
    for name in SOURCES:
        worst_near = min(v for (n, _), v in near.items() if n == name)
        best_other = max(v for pair, v in unrelated.items() if name in pair)
        assert worst_near - best_other > 0.25, name


def test_exif_orientation_is_applied(emb_plugin: ImageEmbeddingPlugin, tmp_path: Path) -> None:
    upright = Image.fromarray(rgb(data.astronaut()))
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif.tobytes())
    no_tag = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95)
    ref = _embed(emb_plugin, tmp_path / "ref", encode(upright, "JPEG", quality=95))[0]
    tagged = _embed(emb_plugin, tmp_path / "tagged", sideways, name="a.jpg")[0]
    untagged = _embed(emb_plugin, tmp_path / "untagged", no_tag, name="b.jpg")[0]
    assert _cos(ref, tagged) > 0.98
    assert _cos(ref, untagged) < _cos(ref, tagged) - 0.1


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_any_mode_converts(case: Case, emb_plugin: ImageEmbeddingPlugin, tmp_path: Path, mode: str) -> None:
    img = Image.fromarray(rgb(data.astronaut()))
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    else:
        converted = img.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    vec = _embed(emb_plugin, tmp_path, encode(converted, fmt), name=f"x.{fmt.lower()}")[0]
    assert vec.shape == (case.dim,)
    assert np.all(np.isfinite(vec))
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


def test_constant_image_embeds(emb_plugin: ImageEmbeddingPlugin, tmp_path: Path) -> None:
    vec = _embed(emb_plugin, tmp_path, encode(Image.new("RGB", (64, 48), (255, 255, 255))))[0]
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 definitely not a picture", "not an image"),
        (encode(data.coffee(), "JPEG")[:600], "corrupt|truncated"),
    ],
    ids=["zero-byte", "pdf", "truncated-jpeg"],
)
def test_bad_inputs(case: Case, emb_plugin: ImageEmbeddingPlugin, tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(PluginError, match=f"(?i){message}"):
        _embed(emb_plugin, tmp_path, payload)
    assert not (tmp_path / case.output).exists()


def test_decompression_bomb_refused(
    emb_plugin: ImageEmbeddingPlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_COMPUTE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(PluginError, match=r"(?i)decompression"):
        _embed(emb_plugin, tmp_path, encode(Image.new("RGB", (40, 40))))
    monkeypatch.delenv("CL_COMPUTE_MAX_IMAGE_PIXELS")
    huge = Image.new("1", (20_000, 10_000))  # 200 MP, a few kB as PNG
    with pytest.raises(PluginError, match=r"(?i)bomb"):
        _embed(emb_plugin, tmp_path / "huge", encode(huge))


def test_details_say_stand_in(case: Case, emb_plugin: ImageEmbeddingPlugin) -> None:
    assert case.not_name in emb_plugin.details["model"]
    assert case.env in emb_plugin.details["onnx_override"]


# -- the ONNX Runtime path ---------------------------------------------------------------------------------


def _tiny_model(path: Path, out_dim: int, kind: str) -> Path:
    """A small fixed-weight vision graph: Conv → Relu → GlobalAveragePool → Flatten → Gemm (``kind="gemm"``),
    or a ViT-like patch embedding that outputs a token sequence (``kind="tokens"``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1234)
    x = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])
    if kind == "gemm":
        inits = [
            numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
            numpy_helper.from_array(np.zeros(8, dtype=np.float32), "b"),
            numpy_helper.from_array(rng.standard_normal((8, out_dim)).astype(np.float32), "g"),
            numpy_helper.from_array(np.zeros(out_dim, dtype=np.float32), "c"),
        ]
        nodes = [
            helper.make_node("Conv", ["pixel_values", "w", "b"], ["conv"], strides=[4, 4]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "g", "c"], ["image_embeds"]),
        ]
        y = helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", out_dim])
    else:
        inits = [
            numpy_helper.from_array((rng.standard_normal((out_dim, 3, 16, 16)) * 0.05).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([0, out_dim, -1], dtype=np.int64), "shape"),
        ]
        nodes = [
            helper.make_node("Conv", ["pixel_values", "w"], ["patches"], strides=[16, 16]),
            helper.make_node("Reshape", ["patches", "shape"], ["seq"]),
            helper.make_node("Transpose", ["seq"], ["last_hidden_state"], perm=[0, 2, 1]),
        ]
        y = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", 196, out_dim])
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _expected_onnx(case: Case, model: Path, img: Image.Image) -> np.ndarray:
    """Upstream's preprocessing and pooling, written out independently of the plugin."""
    import onnxruntime as ort

    arr = np.asarray(img.convert("RGB").resize((224, 224), case.resample), dtype=np.float32) / 255.0
    arr = (arr - np.array(case.mean, dtype=np.float32)) / np.array(case.std, dtype=np.float32)
    x = arr.transpose(2, 0, 1)[None].astype(np.float32)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out = session.run(None, {"pixel_values": x})[0]
    vec = out[0, 0] if out.ndim == 3 else out[0]
    return vec / np.linalg.norm(vec)


@pytest.mark.parametrize("kind", ["gemm", "tokens"])
def test_onnx_model_is_used_when_set(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    model = _tiny_model(tmp_path / f"{kind}.onnx", case.dim, kind)
    monkeypatch.setenv(case.env, str(model))
    plugin = case.plugin()
    plugin.load()
    assert str(model) in plugin.details["model"]
    img = Image.fromarray(rgb(data.astronaut()))
    vec, output, _, _ = _embed(plugin, tmp_path / "job", encode(img))
    assert output == {"embedding_dim": case.dim, "normalized": True}
    assert vec.dtype == np.float32
    np.testing.assert_allclose(vec, _expected_onnx(case, model, img), rtol=1e-4, atol=1e-5)
    # The stand-in descriptor gives a different vector for the same image.
    monkeypatch.delenv(case.env)
    standin = case.plugin()
    standin.load()
    assert _cos(_embed(standin, tmp_path / "standin", encode(img))[0], vec) < 0.9


def test_onnx_output_of_another_width_is_projected(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny_model(tmp_path / "narrow.onnx", 16, "gemm")
    monkeypatch.setenv(case.env, str(model))
    plugin = case.plugin()
    plugin.load()
    payload = encode(data.coffee())
    vec, output, _, _ = _embed(plugin, tmp_path / "a", payload, {"normalize": "no"})
    again = _embed(plugin, tmp_path / "b", payload, {"normalize": "no"})[0]
    assert vec.shape == (case.dim,)
    assert output["normalized"] is False
    np.testing.assert_array_equal(vec, again)


def test_onnx_env_pointing_nowhere_is_unavailable(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(case.env, str(tmp_path / "missing.onnx"))
    with pytest.raises(BackendUnavailable, match=case.env):
        case.plugin().load()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    monkeypatch.setenv(case.env, str(garbage))
    with pytest.raises(BackendUnavailable, match="cannot load"):
        case.plugin().load()


def test_differs_from_the_clip_stand_in(tmp_path: Path) -> None:
    """Different seed and block weights: the pairwise geometry differs from clip_embedding's."""
    clip = ClipEmbeddingPlugin()
    clip.load()
    dino = DinoEmbeddingPlugin()
    dino.load()
    images = [encode(getattr(data, name)()) for name in ("astronaut", "coffee", "rocket")]
    dino_vecs = [_embed(dino, tmp_path / f"d{i}", p)[0] for i, p in enumerate(images)]
    clip_vecs = [_embed(clip, tmp_path / f"c{i}", p)[0] for i, p in enumerate(images)]
    assert clip_vecs[0].shape == (512,)
    assert dino_vecs[0].shape == (384,)
    assert not np.allclose(dino_vecs[0], clip_vecs[0][:384])
    assert _cos(dino_vecs[0], dino_vecs[1]) != pytest.approx(_cos(clip_vecs[0], clip_vecs[1]), abs=1e-3)
