"""The committed test media: manifest integrity, facts re-derived independently, loader API, determinism."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import piexif
import pytest
from PIL import Image, UnidentifiedImageError

from pytest_cl._media import (
    ENV_VAR,
    FaceBox,
    MediaCatalogue,
    MediaCatalogueError,
    MediaIntegrityError,
    MediaItem,
    default_root,
    load_catalogue,
)

REPO = Path(__file__).resolve().parents[3]
MEDIA = REPO / "pytest_cl" / "media"
CAT = load_catalogue(MEDIA)
KINDS = {"face", "no_face", "image", "hostile", "text", "video", "audio"}
NOT_MEDIA = {"manifest.json", "generate.py", "README.md"}
MB = 1024 * 1024


def items(*, kind: str | None = None, tag: str | None = None) -> list[MediaItem]:
    return list(CAT.filter(kind=kind, tag=tag))


def ids(seq: list[MediaItem]) -> list[str]:
    return [i.name for i in seq]


# ------------------------------------------------------------------------------------------ manifest


@pytest.mark.parametrize("item", CAT.items, ids=CAT.names())
def test_file_exists_with_recorded_sha256_and_size(item: MediaItem) -> None:
    assert item.path.is_file(), item.path
    data = item.path.read_bytes()
    assert len(data) == item.size
    assert hashlib.sha256(data).hexdigest() == item.sha256
    assert item.problem() is None


def test_every_committed_media_file_is_in_the_manifest() -> None:
    on_disk = {
        p.relative_to(MEDIA).as_posix()
        for p in MEDIA.rglob("*")
        if p.is_file() and p.name not in NOT_MEDIA and "__pycache__" not in p.parts
    }
    listed = {i.relpath for i in CAT}
    assert on_disk == listed


def test_total_size_within_budget() -> None:
    total = sum(i.path.stat().st_size for i in CAT)
    assert total == CAT.total_size
    assert total <= 25 * MB, f"media/ holds {total / MB:.1f} MB, the budget is 25 MB"


def test_manifest_rows_are_complete() -> None:
    raw = json.loads((MEDIA / "manifest.json").read_text(encoding="utf-8"))
    assert raw["schema"] == 1
    assert raw["total_size"] == CAT.total_size
    for item in CAT:
        assert item.kind in KINDS, item.name
        assert item.kind in item.tags, item.name
        assert item.origin in {"synthetic", "derived", "third_party"}, item.name
        assert len(item.provenance) > 20, item.name
        assert ("Public domain" in item.licence) or ("CC0" in item.licence), item.name
        assert len(item.sha256) == 64


def test_the_promised_media_are_there() -> None:
    assert len(items(kind="face")) >= 5
    assert len(items(kind="no_face")) >= 2
    assert len(items(kind="video")) == 3
    assert len(items(kind="audio")) == 1
    for tag in ("empty", "truncated", "wrong_extension", "decompression_bomb", "spaces", "unicode", "url_special"):
        assert items(tag=tag), tag
    assert CAT["name_unicode"].path.name == "café 画像.jpg"
    assert "#" in CAT["name_hash_question"].path.name
    assert "?" in CAT["name_hash_question"].path.name
    assert " " in CAT["name_spaces"].path.name


# ------------------------------------------------------------------------------------------ images


def _decodable_images() -> list[MediaItem]:
    return [
        i
        for i in CAT
        if i.kind in {"face", "no_face", "image"} or (i.kind == "hostile" and i.facts.get("decodable") is True)
    ]


@pytest.mark.parametrize("item", _decodable_images(), ids=ids(_decodable_images()))
def test_pillow_agrees_on_format_size_and_mode(item: MediaItem) -> None:
    with Image.open(item.path) as im:
        im.load()
        assert im.format == item.fact_str("format")
        assert im.size == (item.fact_int("width"), item.fact_int("height"))
        assert im.mode == item.fact_str("mode")


def test_required_image_shapes() -> None:
    assert (CAT["jpeg_1920x1080"].fact_int("width"), CAT["jpeg_1920x1080"].fact_int("height")) == (1920, 1080)
    assert (CAT["png_800x600"].fact_int("width"), CAT["png_800x600"].fact_int("height")) == (800, 600)
    assert CAT["gif_palette"].fact_str("mode") == "P"
    assert CAT["png_grey"].fact_str("mode") == "L"
    big = CAT["jpeg_6000x4000"]
    assert (big.fact_int("width"), big.fact_int("height")) == (6000, 4000)
    assert big.size <= 1.5 * MB


def test_rgba_png_has_real_transparency() -> None:
    item = CAT["png_rgba"]
    with Image.open(item.path) as im:
        assert im.mode == "RGBA"
        lo, hi = im.getchannel("A").getextrema()
    assert (lo, hi) == (0, 255)
    assert item.fact_int("alpha_min") == 0
    assert item.fact_bool("has_transparency") is True


def test_png_and_lossless_webp_decode_to_identical_pixels() -> None:
    png, webp = CAT["png_pixels_twin"], CAT["webp_pixels_twin"]
    assert png.sha256 != webp.sha256
    digests = set()
    for item in (png, webp):
        with Image.open(item.path) as im:
            digests.add(hashlib.sha256(im.convert("RGB").tobytes()).hexdigest())
    assert digests == {png.fact_str("pixels_sha256")}


def test_hostile_files_fail_as_described() -> None:

    assert CAT["hostile_empty"].size == 0
    for name in ("hostile_empty", "hostile_text_as_jpeg"):
        with pytest.raises(UnidentifiedImageError):
            Image.open(CAT[name].path)
    assert CAT["hostile_text_as_jpeg"].read_bytes().decode("ascii").startswith("This is a plain text file")

    trunc = CAT["hostile_truncated_jpeg"]
    with Image.open(trunc.path) as im:
        assert im.size == (trunc.fact_int("width"), trunc.fact_int("height"))
        with pytest.raises(OSError, match="truncated"):
            im.load()
    full = CAT["jpeg_exif_stripped"].read_bytes()
    assert trunc.read_bytes() == full[: len(full) // 2]

    bomb = CAT["hostile_bomb_png"]
    assert bomb.size < 200_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb.path)
    data = bomb.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == bomb.fact_int("declared_width") == 30000
    assert int.from_bytes(data[20:24], "big") == bomb.fact_int("declared_height") == 30000


def test_plain_text_file() -> None:
    item = CAT["text_plain"]
    text = item.read_bytes().decode("ascii")
    assert len(text) == item.fact_int("chars")
    assert text.count("\n") == item.fact_int("lines")


# ------------------------------------------------------------------------------------------ faces


@pytest.mark.parametrize("item", items(kind="face"), ids=ids(items(kind="face")))
def test_face_boxes_are_sane(item: MediaItem) -> None:
    boxes = item.face_boxes()
    assert item.face_count == len(boxes) >= 1
    w, h = item.fact_int("width"), item.fact_int("height")
    for b in boxes:
        assert 0.0 <= b.x1 < b.x2 <= 1.0
        assert 0.0 <= b.y1 < b.y2 <= 1.0
        assert b.identity
        # each face is big enough for any detector
        assert min((b.x2 - b.x1) * w, (b.y2 - b.y1) * h) >= 40


def test_group_picture_has_at_least_three_large_distinct_faces() -> None:
    group = CAT["group_4_faces"]
    boxes = group.face_boxes()
    assert len(boxes) >= 3
    assert len({b.identity for b in boxes}) == len(boxes)
    w, h = group.fact_int("width"), group.fact_int("height")
    assert min(min((b.x2 - b.x1) * w, (b.y2 - b.y1) * h) for b in boxes) >= 100
    # side by side, not overlapping
    for left, right in itertools.pairwise(boxes):
        assert left.x2 < right.x1
    single = {i.fact_str("identity") for i in CAT.filter(kind="face", tag="single_face")}
    assert {b.identity for b in boxes} <= single


def test_second_photo_of_the_astronaut() -> None:
    a, v = CAT["face_astronaut"], CAT["face_astronaut_variant"]
    assert v.fact_str("same_person_as") == a.name
    assert v.fact_str("identity") == a.fact_str("identity") == "eileen_collins"
    assert (v.fact_int("width"), v.fact_int("height")) == (384, 384)
    assert v.sha256 != a.sha256
    assert a.face_boxes()[0].iou(*_coords(v.face_boxes()[0])) > 0.5


def test_no_face_images_declare_zero_faces() -> None:
    for item in items(kind="no_face"):
        assert item.face_count == 0
        assert item.face_boxes() == ()


def _coords(b: FaceBox) -> tuple[float, float, float, float]:
    return (b.x1, b.y1, b.x2, b.y2)


# ------------------------------------------------------------------------------------------ EXIF


def test_exif_values_read_back_with_piexif() -> None:
    item = CAT["jpeg_exif"]
    exif = item.fact_mapping("exif")
    typed = exif["typed"]
    tool = exif["exiftool"]
    assert isinstance(typed, dict | type(item.facts))
    d = piexif.load(str(item.path))
    zeroth, ex, gps = d["0th"], d["Exif"], d["GPS"]
    assert zeroth[piexif.ImageIFD.Make].decode() == typed["make"] == tool["EXIF:Make"]
    assert zeroth[piexif.ImageIFD.Model].decode() == typed["model"]
    assert zeroth[piexif.ImageIFD.Software].decode() == typed["software"]
    assert zeroth[piexif.ImageIFD.Orientation] == typed["orientation"]
    assert zeroth[piexif.ImageIFD.ImageWidth] == typed["image_width"] == item.fact_int("width")
    assert zeroth[piexif.ImageIFD.ImageLength] == typed["image_height"] == item.fact_int("height")
    assert ex[piexif.ExifIFD.DateTimeOriginal].decode() == typed["date_time_original"]
    assert ex[piexif.ExifIFD.DateTimeDigitized].decode() == typed["create_date"] == tool["EXIF:CreateDate"]
    assert ex[piexif.ExifIFD.ISOSpeedRatings] == typed["iso"]
    assert ex[piexif.ExifIFD.LensModel].decode() == tool["EXIF:LensModel"]
    assert str(Fraction(*ex[piexif.ExifIFD.ExposureTime])) == typed["exposure_time"]
    assert float(Fraction(*ex[piexif.ExifIFD.ExposureTime])) == tool["EXIF:ExposureTime"]
    assert float(Fraction(*ex[piexif.ExifIFD.FNumber])) == typed["f_number"]
    assert float(Fraction(*ex[piexif.ExifIFD.FocalLength])) == typed["focal_length"]

    def dms(v: tuple[tuple[int, int], ...]) -> float:
        return sum(float(Fraction(*part)) / 60**i for i, part in enumerate(v))

    lat = dms(gps[piexif.GPSIFD.GPSLatitude]) * (1 if gps[piexif.GPSIFD.GPSLatitudeRef] == b"N" else -1)
    lon = dms(gps[piexif.GPSIFD.GPSLongitude]) * (1 if gps[piexif.GPSIFD.GPSLongitudeRef] == b"E" else -1)
    assert math.isclose(lat, typed["gps_latitude"], abs_tol=1e-9)
    assert math.isclose(lon, typed["gps_longitude"], abs_tol=1e-9)
    assert lon < 0
    assert float(Fraction(*gps[piexif.GPSIFD.GPSAltitude])) == typed["gps_altitude"]
    assert tool["Composite:GPSLongitude"] == typed["gps_longitude"]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_exif_values_read_back_with_exiftool() -> None:
    item = CAT["jpeg_exif"]
    out = subprocess.run(["exiftool", "-G", "-n", "-j", str(item.path)], capture_output=True, check=True)
    got = json.loads(out.stdout)[0]
    expected = item.fact_mapping("exif")["exiftool"]
    assert isinstance(expected, type(item.facts))
    for key, value in expected.items():
        assert got.get(key) == value, key

    stripped = CAT["jpeg_exif_stripped"]
    out = subprocess.run(["exiftool", "-G", "-n", "-j", str(stripped.path)], capture_output=True, check=True)
    assert not [k for k in json.loads(out.stdout)[0] if k.startswith(("EXIF:", "Composite:GPS"))]


def test_stripped_copy_has_no_exif_and_the_same_pixels() -> None:
    rich, stripped = CAT["jpeg_exif"], CAT["jpeg_exif_stripped"]
    assert not any(piexif.load(str(stripped.path))[ifd] for ifd in ("0th", "Exif", "GPS"))
    with Image.open(rich.path) as a, Image.open(stripped.path) as b:
        assert a.tobytes() == b.tobytes()
    assert stripped.size < rich.size


# ------------------------------------------------------------------------------------------ video


@pytest.mark.parametrize(
    "item", [*items(kind="video"), *items(kind="audio")], ids=[*ids(items(kind="video")), "audio_3s"]
)
def test_pyav_agrees_on_streams_and_duration(item: MediaItem) -> None:
    with av.open(str(item.path)) as container:
        assert container.duration is not None
        duration = container.duration / 1_000_000
        assert abs(duration - item.fact_float("duration")) < 0.1
        videos = container.streams.video
        audios = container.streams.audio
        assert bool(audios) == item.fact_bool("has_audio")
        if item.kind == "audio":
            assert not videos
        else:
            v = videos[0]
            assert v.codec_context.name == item.fact_str("video_codec") == "h264"
            assert (v.codec_context.width, v.codec_context.height) == (item.fact_int("width"), item.fact_int("height"))
            assert v.codec_context.pix_fmt == "yuv420p"
            assert v.average_rate == item.fact_int("fps")
            assert v.frames == item.fact_int("frames")
        if audios:
            a = audios[0]
            assert a.codec_context.name == "aac"
            assert a.codec_context.sample_rate == item.fact_int("audio_sample_rate")
        if videos:
            keys = [p.pts for p in container.demux(videos[0]) if p.is_keyframe and p.size]
            assert len(keys) == item.fact_int("keyframes")
            step = item.fact_int("keyframe_interval_frames")
            tb = videos[0].time_base
            assert tb is not None
            frames = [round(float(pts * tb) * item.fact_int("fps")) for pts in keys if pts is not None]
            assert [b - a for a, b in itertools.pairwise(frames)] == [step] * (len(frames) - 1)


def _top_level_atoms(data: bytes) -> list[str]:
    atoms: list[str] = []
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        atoms.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return atoms


def test_videos_are_faststart() -> None:
    for item in [*items(kind="video"), *items(kind="audio")]:
        atoms = _top_level_atoms(item.read_bytes())
        assert atoms[0] == "ftyp", item.name
        assert atoms.index("moov") < atoms.index("mdat"), f"{item.name}: {atoms}"
        assert item.fact_bool("faststart") is True


def test_required_videos() -> None:
    v1080 = CAT["video_1080p_10s_audio"]
    assert (v1080.fact_int("height"), v1080.fact_float("duration"), v1080.fact_bool("has_audio")) == (1080, 10.0, True)
    assert v1080.size <= 2.5 * MB
    v5 = CAT["video_720p_5s_audio"]
    assert (v5.fact_int("height"), v5.fact_float("duration"), v5.fact_bool("has_audio")) == (720, 5.0, True)
    v3 = CAT["video_720p_3s_silent"]
    assert (v3.fact_int("height"), v3.fact_float("duration"), v3.fact_bool("has_audio")) == (720, 3.0, False)
    assert CAT["audio_3s"].fact_bool("has_video") is False


# ------------------------------------------------------------------------------------------ loader API


def test_catalogue_lookup_and_filters() -> None:
    assert isinstance(CAT, MediaCatalogue)
    assert len(CAT) == len(CAT.names()) == len(list(CAT))
    assert "group_4_faces" in CAT
    assert "nope" not in CAT
    assert 3 not in CAT
    assert CAT.get("nope") is None
    assert CAT.get("text_plain") is CAT["text_plain"]
    with pytest.raises(MediaCatalogueError, match="no media item named 'nope'"):
        _ = CAT["nope"]
    assert CAT.by_kind("video") == CAT.filter(kind="video")
    assert {i.name for i in CAT.with_tag("audio")} == {"video_1080p_10s_audio", "video_720p_5s_audio", "audio_3s"}
    assert ids(list(CAT.filter(kind="video", tags=["audio", "720p"]))) == ["video_720p_5s_audio"]
    assert CAT.filter(kind="face", tag="no_such_tag") == ()
    assert all(i.has_tag(i.kind) for i in CAT)
    assert CAT.root == MEDIA.resolve()
    assert CAT.generator["pillow"]


def test_items_are_frozen_and_facts_read_only() -> None:
    item = CAT["png_rgba"]
    with pytest.raises(AttributeError):
        item.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        item.facts["width"] = 1  # type: ignore[index]
    assert isinstance(item.tags, tuple)


def test_typed_fact_accessors_narrow_or_explain() -> None:
    item = CAT["video_720p_5s_audio"]
    assert item.fact_int("width") == 1280
    assert item.fact_float("fps") == 30.0
    assert item.fact_bool("has_audio") is True
    assert item.fact_str("video_codec") == "h264"
    assert CAT["group_4_faces"].fact_mapping("faces")["count"] == 4
    with pytest.raises(MediaCatalogueError, match="fact 'has_audio' is bool"):
        item.fact_int("has_audio")
    with pytest.raises(MediaCatalogueError, match="has no fact 'colour'"):
        item.fact("colour")
    with pytest.raises(MediaCatalogueError, match="not list"):
        item.fact_list("width")
    with pytest.raises(MediaCatalogueError, match="not object"):
        item.fact_mapping("width")
    with pytest.raises(MediaCatalogueError, match="not str"):
        item.fact_str("width")
    with pytest.raises(MediaCatalogueError, match="not bool"):
        item.fact_bool("width")
    with pytest.raises(MediaCatalogueError, match="not float"):
        item.fact_float("video_codec")


def test_face_box_iou() -> None:
    b = FaceBox(0.0, 0.0, 0.5, 0.5, "x")
    assert b.iou(0.0, 0.0, 0.5, 0.5) == 1.0
    assert b.iou(0.5, 0.5, 1.0, 1.0) == 0.0
    assert math.isclose(b.iou(0.25, 0.0, 0.75, 0.5), 1 / 3)


def _tiny_media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a b.txt").write_bytes(b"hello\n")
    manifest = {
        "schema": 1,
        "generator": {"pillow": "x"},
        "files": [
            {
                "name": "a",
                "path": "sub/a b.txt",
                "kind": "text",
                "tags": ["text"],
                "sha256": hashlib.sha256(b"hello\n").hexdigest(),
                "size": 6,
                "facts": {"lines": 1, "seq": [1, 2], "nested": {"list": [1, {"k": "v"}]}},
            }
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def test_verify_detects_changed_and_missing_files(tmp_path: Path) -> None:
    root = _tiny_media(tmp_path)
    cat = load_catalogue(root)
    cat.verify()
    assert cat.problems() == ()
    assert cat["a"].fact_list("seq") == (1, 2)
    nested = cat["a"].fact_mapping("nested")["list"]
    assert nested == (1, {"k": "v"})
    (root / "sub" / "a b.txt").write_bytes(b"HELLO\n")
    with pytest.raises(MediaIntegrityError, match="has sha256") as err:
        cat.verify()
    assert len(err.value.problems) == 1
    assert "generate.py" in str(err.value)
    (root / "sub" / "a b.txt").write_bytes(b"hi\n")
    assert "has 3 bytes" in cat.problems()[0]
    (root / "sub" / "a b.txt").unlink()
    assert "is missing" in cat.problems()[0]


def test_root_from_environment_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tiny_media(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(root))
    assert default_root() == root
    assert load_catalogue().names() == ("a",)
    monkeypatch.delenv(ENV_VAR)
    assert default_root() == MEDIA
    with pytest.raises(MediaCatalogueError, match="no media manifest"):
        load_catalogue(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(MediaCatalogueError, match="not valid JSON"):
        load_catalogue(bad)
    (bad / "manifest.json").write_text(json.dumps({"files": [{"name": "x", "path": "../etc/passwd"}]}), "utf-8")
    with pytest.raises(MediaCatalogueError, match="must be relative"):
        load_catalogue(bad)
    row = {"name": "x", "path": "x", "kind": "text", "sha256": "0" * 64, "size": "6"}
    (bad / "manifest.json").write_text(json.dumps({"files": [row, row]}), "utf-8")
    with pytest.raises(MediaCatalogueError, match="size: expected an integer"):
        load_catalogue(bad)
    row["size"] = 6
    (bad / "manifest.json").write_text(json.dumps({"files": [row, row]}), "utf-8")
    with pytest.raises(MediaCatalogueError, match="duplicate media name 'x'"):
        load_catalogue(bad)


# ------------------------------------------------------------------------------------------ determinism


BYTE_RELEVANT = ("pillow", "libjpeg_turbo", "zlib", "webp", "numpy", "piexif", "ffmpeg")


def test_generate_check_reproduces_every_file() -> None:
    """Regenerate everything into a temp dir (about 12 s here) and compare with the committed manifest."""
    out = subprocess.run(
        [sys.executable, str(MEDIA / "generate.py"), "--versions"], capture_output=True, check=True, text=True
    )
    current = json.loads(out.stdout)
    committed = CAT.generator
    differ = {k: (committed.get(k), current.get(k)) for k in BYTE_RELEVANT if committed.get(k) != current.get(k)}
    if differ:
        pytest.skip(f"the media were generated with other library versions, so bytes may differ: {differ}")
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not on PATH (generate.py checks the videos with it)")
    res = subprocess.run(
        [sys.executable, str(MEDIA / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"checked {len(CAT)} files: OK" in res.stdout


def test_libmagic_agrees_on_mime_types() -> None:
    magic = pytest.importorskip("magic")
    for item in CAT:
        assert magic.from_file(str(item.path), mime=True) == item.fact_str("mime_type"), item.name
