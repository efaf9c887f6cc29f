"""``ExifResult`` from upstream-shaped output (PROTOCOL §8): every typed field null, ``-G -n`` raw keys.

The raw metadata is the committed media's own ExifTool ``-G -n -j`` output (``exif.exiftool`` in the media
manifest), and the expected typed values are the manifest's ``exif.typed`` facts, written by the media
generator from the values it embedded — neither comes from the client. The file store is in memory because
no correct server produces upstream's null typed fields on demand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import cast

import pytest

from cl_client.plugins import get_spec
from cl_client.plugins.exif import ExifResult
from pytest_cl._media import load_catalogue

from .offline_files import fake_files, record

TYPED = ("make", "model", "date_time_original", "create_date", "exposure_time", "software", "image_width",
         "image_height", "orientation", "iso", "f_number", "focal_length", "gps_latitude", "gps_longitude",
         "gps_altitude")  # fmt: skip


def _facts() -> tuple[dict[str, object], Mapping[str, object]]:
    exif = load_catalogue()["jpeg_exif"].fact_mapping("exif")
    return dict(cast("Mapping[str, object]", exif["exiftool"])), cast("Mapping[str, object]", exif["typed"])


def _build(raw: Mapping[str, object]) -> ExifResult:
    """Run the exif result plan on an upstream-shaped exif_metadata.json (typed fields null)."""
    body = json.dumps({**dict.fromkeys(TYPED), "raw_metadata": dict(raw)}).encode()
    files = fake_files({"output/exif_metadata.json": body})
    result = files.run(get_spec("exif").build(record("exif", {}, {}), files))
    assert isinstance(result, ExifResult)
    return result


def _mismatches(result: ExifResult, typed: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    for name in TYPED:
        want, seen = typed[name], getattr(result, name)
        same = abs(float(want) - float(seen)) < 1e-6 if isinstance(want, float) and seen is not None else want == seen
        if not same:
            out.append(f"{name}: expected {want!r}, got {seen!r}")
    return out


def test_every_typed_field_is_filled_from_upstream_raw_output() -> None:
    raw, typed = _facts()
    result = _build(raw)
    assert not _mismatches(result, typed), _mismatches(result, typed)


@pytest.mark.parametrize("order", ["exif-first", "composite-first"])
def test_west_and_south_are_negative_whatever_the_key_order(order: str) -> None:
    raw, _ = _facts()
    # upstream's JSON lists EXIF:GPSLongitude (unsigned) before Composite:GPSLongitude (signed): the old code
    # took the first match and reported a western longitude as positive
    raw["EXIF:GPSLatitudeRef"] = "S"
    raw["Composite:GPSLatitude"] = -37.7749
    keys = sorted(raw, key=lambda k: (k.startswith("Composite:") == (order == "exif-first"), k))
    result = _build({k: raw[k] for k in keys})
    assert result.gps_longitude == pytest.approx(-122.4194), "W longitude must be negative"
    assert result.gps_latitude == pytest.approx(-37.7749), "S latitude must be negative"
    assert result.gps_altitude == pytest.approx(16.5)


def test_without_composite_tags_the_sign_comes_from_the_ref_tags() -> None:
    raw, _ = _facts()
    raw = {k: v for k, v in raw.items() if not k.startswith("Composite:")}
    raw.update({"EXIF:GPSLatitudeRef": "S", "EXIF:GPSAltitudeRef": 1})
    result = _build(raw)
    assert result.gps_latitude == pytest.approx(-37.7749)
    assert result.gps_longitude == pytest.approx(-122.4194)
    assert result.gps_altitude == pytest.approx(-16.5), "GPSAltitudeRef 1 means below sea level"
    raw.update({"EXIF:GPSLatitudeRef": "N", "EXIF:GPSLongitudeRef": "E", "EXIF:GPSAltitudeRef": 0})
    north_east = _build(raw)
    assert (north_east.gps_latitude, north_east.gps_longitude, north_east.gps_altitude) == pytest.approx(
        (37.7749, 122.4194, 16.5)
    )


@pytest.mark.parametrize(
    ("value", "text"), [(0.004, "1/250"), (1 / 60, "1/60"), (0.5, "0.5"), (2, "2"), (1.3, "1.3"), ("1/250", "1/250")]
)
def test_exposure_time_number_or_string(value: object, text: str) -> None:
    raw, _ = _facts()
    raw["EXIF:ExposureTime"] = value
    assert _build(raw).exposure_time == text


def test_get_prefers_composite_and_exact_keys() -> None:
    result = _build({"EXIF:GPSLongitude": 1.0, "Composite:GPSLongitude": -1.0, "XMP:Make": "A", "Make": "B"})
    assert result.get("GPSLongitude") == -1.0
    assert result.key_of("GPSLongitude") == "Composite:GPSLongitude"
    assert result.get("Make") == "B"
    assert result.get("XMP:Make") == "A"
    assert result.get("Model") is None
