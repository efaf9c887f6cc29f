"""exif plugin: values written with piexif read back exactly through both backends, and both agree."""

from __future__ import annotations

import io
import json
from pathlib import Path

import piexif
import pytest
from PIL import Image
from plugin_test_exif import BACKENDS, HAVE_EXIFTOOL

from cl_compute.plugins import get_plugin
from cl_compute.plugins.base import BackendUnavailable, ParamError, PluginError
from cl_compute.plugins.exif import FIELDS, ExifPlugin

# What the fixture writes, and what every backend must read back.
EXPECTED = {
    "make": "Canon",
    "model": "Canon EOS R5",
    "software": "cl-test 1.0",
    "date_time_original": "2024:05:06 07:08:09",
    "create_date": "2024:05:06 07:08:10",
    "orientation": 6,
    "iso": 400,
    "f_number": 2.8,
    "exposure_time": "1/250",
    "focal_length": 50.0,
    "gps_latitude": -37.7749,
    "gps_longitude": -122.4194,
    "gps_altitude": -12.5,
    "image_width": 64,
    "image_height": 48,
}


def _exif_bytes(north_east: bool = False) -> bytes:
    exif = {
        "0th": {
            piexif.ImageIFD.Make: b"Canon",
            piexif.ImageIFD.Model: b"Canon EOS R5",
            piexif.ImageIFD.Orientation: 6,
            piexif.ImageIFD.Software: b"cl-test 1.0",
            piexif.ImageIFD.DateTime: b"2024:05:06 07:08:11",
            piexif.ImageIFD.XResolution: (72, 1),
            piexif.ImageIFD.YResolution: (72, 1),
            piexif.ImageIFD.ResolutionUnit: 2,
        },
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: b"2024:05:06 07:08:09",
            piexif.ExifIFD.DateTimeDigitized: b"2024:05:06 07:08:10",
            piexif.ExifIFD.FNumber: (28, 10),
            piexif.ExifIFD.ISOSpeedRatings: 400,
            piexif.ExifIFD.ExposureTime: (1, 250),
            piexif.ExifIFD.FocalLength: (50, 1),
            piexif.ExifIFD.ExifVersion: b"0232",
            piexif.ExifIFD.LensModel: b"RF50mm F1.8 STM",
        },
        "GPS": {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if north_east else b"S",
            piexif.GPSIFD.GPSLatitude: ((37, 1), (46, 1), (2964, 100)),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if north_east else b"W",
            piexif.GPSIFD.GPSLongitude: ((122, 1), (25, 1), (984, 100)),
            piexif.GPSIFD.GPSAltitudeRef: 0 if north_east else 1,
            piexif.GPSIFD.GPSAltitude: (125, 10),
            piexif.GPSIFD.GPSTimeStamp: ((7, 1), (8, 1), (9, 1)),
            piexif.GPSIFD.GPSDateStamp: b"2024:05:06",
        },
    }
    return piexif.dump(exif)


def _image(fmt: str = "JPEG", north_east: bool = False) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 200)).save(buf, format=fmt, exif=_exif_bytes(north_east))
    return buf.getvalue()


def _run(
    mp_job,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    source: Path | bytes,
    tags: str = "",
    name: str = "photo.jpg",
):
    monkeypatch.setenv("CL_COMPUTE_EXIF_BACKEND", backend)
    job = mp_job(ExifPlugin(), source, {"tags": tags}, upload_name=name)
    on_disk = json.loads(job.out().read_text())
    assert on_disk == job.task_output
    assert job.params["output_path"] == "output/exif_metadata.json"
    return job.task_output


def _check_types(out: dict) -> None:
    assert set(out) == {*FIELDS, "raw_metadata"}
    for f in ("make", "model", "date_time_original", "create_date", "exposure_time", "software"):
        assert out[f] is None or isinstance(out[f], str), f
    for f in ("image_width", "image_height", "orientation", "iso"):
        assert out[f] is None or (isinstance(out[f], int) and not isinstance(out[f], bool)), f
    for f in ("f_number", "focal_length", "gps_latitude", "gps_longitude", "gps_altitude"):
        assert out[f] is None or isinstance(out[f], float), f
    assert isinstance(out["raw_metadata"], dict)


def test_params() -> None:
    plugin = get_plugin("exif")
    assert isinstance(plugin, ExifPlugin)
    assert plugin.parse_params({}, "a.jpg") == {"tags": [], "output_path": "output/exif_metadata.json"}
    assert plugin.parse_params({"tags": " Make, Model ,,EXIF:GPS*, "}, "a.jpg")["tags"] == [
        "Make",
        "Model",
        "EXIF:GPS*",
    ]
    for bad in ("Make,-execute", "Make;rm", "a b", "../x", "Make,@argfile", ",".join(["T"] * 500)):
        with pytest.raises(ParamError) as err:
            plugin.parse_params({"tags": bad}, "a.jpg")
        assert err.value.field == "tags"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tags", ["", "Make", "ISO,FNumber"])
def test_typed_fields_whatever_tags(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str, tags: str) -> None:
    out = _run(mp_job, monkeypatch, backend, _image(), tags)
    _check_types(out)
    for field, value in EXPECTED.items():
        if isinstance(value, float):
            assert out[field] == pytest.approx(value, abs=1e-6), field
        else:
            assert out[field] == value, field


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_metadata_keys_and_values(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    raw = _run(mp_job, monkeypatch, backend, _image())["raw_metadata"]
    assert raw["SourceFile"] == "input/photo.jpg"
    assert raw["EXIF:Make"] == "Canon"
    assert raw["EXIF:Model"] == "Canon EOS R5"
    assert raw["EXIF:ISO"] == 400
    assert raw["EXIF:FNumber"] == 2.8
    assert raw["EXIF:ExposureTime"] == 0.004
    assert raw["EXIF:ModifyDate"] == "2024:05:06 07:08:11"
    assert raw["EXIF:CreateDate"] == "2024:05:06 07:08:10"
    assert raw["EXIF:LensModel"] == "RF50mm F1.8 STM"
    assert raw["EXIF:GPSLatitudeRef"] == "S"
    assert raw["EXIF:GPSLatitude"] == pytest.approx(37.7749)
    assert raw["EXIF:GPSAltitudeRef"] == 1
    assert raw["EXIF:GPSTimeStamp"] == "07:08:09"
    assert raw["EXIF:GPSVersionID"] == "2 3 0 0"
    assert raw["Composite:GPSLatitude"] == pytest.approx(-37.7749)
    assert raw["Composite:GPSLongitude"] == pytest.approx(-122.4194)
    assert raw["Composite:GPSAltitude"] == pytest.approx(-12.5)
    assert raw["File:ImageWidth"] == 64
    assert raw["File:ImageHeight"] == 48
    assert raw["File:FileType"] == "JPEG"
    assert raw["File:MIMEType"] == "image/jpeg"
    assert raw["Composite:ImageSize"] == "64 48"


@pytest.mark.skipif(not HAVE_EXIFTOOL, reason="exiftool not on PATH")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_backends_agree(mp_job, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    data = _image(fmt, north_east=True)
    a = _run(mp_job, monkeypatch, "exiftool", data, name=f"x.{fmt.lower()}")
    b = _run(mp_job, monkeypatch, "python", data, name=f"x.{fmt.lower()}")
    assert {k: a[k] for k in FIELDS} == {k: b[k] for k in FIELDS}
    assert a["gps_latitude"] == pytest.approx(37.7749)
    assert a["gps_altitude"] == pytest.approx(12.5)
    common = set(a["raw_metadata"]) & set(b["raw_metadata"])
    # the python reader covers the common tags ExifTool reports
    for key in ("EXIF:Make", "EXIF:ISO", "EXIF:GPSLatitude", "Composite:GPSLongitude", "File:MIMEType"):
        assert key in common, key
    skip = {"File:FileModifyDate", "File:FileType"}  # clock/timezone detail, "Extended WEBP"
    diffs = {k: (a["raw_metadata"][k], b["raw_metadata"][k]) for k in common - skip}
    diffs = {k: v for k, v in diffs.items() if v[0] != v[1] and v[0] != pytest.approx(v[1])}
    assert not diffs


@pytest.mark.parametrize("backend", BACKENDS)
def test_tags_filter_raw(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    raw = _run(mp_job, monkeypatch, backend, _image(), "Make,model")["raw_metadata"]
    assert set(raw) == {"SourceFile", "EXIF:Make", "EXIF:Model"}
    raw = _run(mp_job, monkeypatch, backend, _image(), "EXIF:GPS*")["raw_metadata"]
    assert "EXIF:GPSLatitude" in raw
    assert "Composite:GPSLatitude" not in raw
    assert all(k == "SourceFile" or k.startswith("EXIF:GPS") for k in raw)
    raw = _run(mp_job, monkeypatch, backend, _image(), "Composite:all")["raw_metadata"]
    assert raw
    assert all(k == "SourceFile" or k.startswith("Composite:") for k in raw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_without_exif(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (30, 20)).save(buf, format="PNG")
    out = _run(mp_job, monkeypatch, backend, buf.getvalue(), name="plain.png")
    _check_types(out)
    assert (out["image_width"], out["image_height"]) == (30, 20)
    assert all(out[f] is None for f in FIELDS if f not in ("image_width", "image_height"))
    assert out["raw_metadata"]["PNG:ImageWidth"] == 30


@pytest.mark.parametrize("backend", BACKENDS)
def test_video(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str, mp_video_av: Path) -> None:
    out = _run(mp_job, monkeypatch, backend, mp_video_av, name="clip.mp4")
    _check_types(out)
    assert (out["image_width"], out["image_height"]) == (160, 120)
    raw = out["raw_metadata"]
    assert raw["QuickTime:Duration"] == pytest.approx(2.0, abs=0.1)
    assert raw["QuickTime:ImageWidth"] == 160
    assert raw["File:MIMEType"] == "video/mp4"
    assert out["create_date"] is None  # zero dates are not dates


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_file(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    out = _run(mp_job, monkeypatch, backend, b"just text\n", name="notes.txt")
    assert out["raw_metadata"]["File:FileType"] == "TXT"
    assert all(out[f] is None for f in FIELDS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("data", "match"), [(b"", "empty"), (bytes(range(7, 256)) * 20, "unknown|Unknown")])
def test_bad_inputs(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str, data: bytes, match: str) -> None:
    with pytest.raises(PluginError, match=match):
        _run(mp_job, monkeypatch, backend, data, name="junk.bin")


def test_forced_exiftool_missing(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CL_COMPUTE_EXIF_BACKEND", "exiftool")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BackendUnavailable):
        ExifPlugin().load()
    monkeypatch.setenv("CL_COMPUTE_EXIF_BACKEND", "auto")
    plugin = ExifPlugin()
    plugin.load()
    assert "python" in plugin.details["backend"]
    monkeypatch.setenv("CL_COMPUTE_EXIF_BACKEND", "bogus")
    with pytest.raises(BackendUnavailable):
        ExifPlugin().load()


def test_auto_uses_python_without_exiftool(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    out = _run(mp_job, monkeypatch, "auto", _image())
    assert out["make"] == "Canon"
    assert "ExifTool:ExifToolVersion" not in out["raw_metadata"]


@pytest.mark.skipif(not HAVE_EXIFTOOL, reason="exiftool not on PATH")
def test_auto_prefers_exiftool(mp_job, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _run(mp_job, monkeypatch, "auto", _image())
    assert "ExifTool:ExifToolVersion" in out["raw_metadata"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_image_header_only(mp_job, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    # metadata never decodes pixels, so an image over the bomb limit still gives its metadata
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10 * 10)
    out = _run(mp_job, monkeypatch, backend, _image())
    assert out["make"] == "Canon"
    assert (out["image_width"], out["image_height"]) == (64, 48)
    assert Image.MAX_IMAGE_PIXELS == 100
