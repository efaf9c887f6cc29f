"""Loader for the committed test media catalogue (``pytest_cl/media/manifest.json``); standard library only.

The catalogue lists every committed test file with its sha256, size, kind, tags, provenance, licence and
the facts the conformance suites rely on (pixel size, faces, EXIF values, durations, streams, ...)::

    cat = load_catalogue()                 # $CL_MEDIA_DIR, else the media shipped in pytest_cl/media
    cat.verify()                           # raises MediaIntegrityError on any missing or changed file
    group = cat["group_4_faces"]
    group.path, group.fact_int("width"), group.face_boxes()
    for item in cat.filter(kind="video", tag="audio"): ...

Errors::

    MediaCatalogueError          the manifest is missing or malformed, or a name/fact is unknown
     └── MediaIntegrityError     files are missing or differ from their recorded size / sha256
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import cast

__all__ = [
    "ENV_VAR",
    "MANIFEST_NAME",
    "FaceBox",
    "MediaCatalogue",
    "MediaCatalogueError",
    "MediaIntegrityError",
    "MediaItem",
    "default_root",
    "load_catalogue",
]

ENV_VAR = "CL_MEDIA_DIR"
MANIFEST_NAME = "manifest.json"
_REGENERATE = "uv run python pytest_cl/media/generate.py"


class MediaCatalogueError(Exception):
    """The media manifest is missing or malformed, or a name or fact asked for is not in it."""


class MediaIntegrityError(MediaCatalogueError):
    """Committed media files are missing or differ from the manifest; ``problems`` lists each one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        lines = "\n  ".join(self.problems)
        super().__init__(
            f"{len(self.problems)} media file(s) do not match media/{MANIFEST_NAME}:\n  {lines}\n"
            f"Restore them with 'git checkout -- media' or rebuild them with '{_REGENERATE}'."
        )


@dataclass(frozen=True)
class FaceBox:
    """A rough face box, corners normalised to [0, 1] (top-left origin), with the person's identity label."""

    x1: float
    y1: float
    x2: float
    y2: float
    identity: str

    def iou(self, x1: float, y1: float, x2: float, y2: float) -> float:
        """Intersection over union with another normalised box (x1, y1, x2, y2)."""
        iw = max(0.0, min(self.x2, x2) - max(self.x1, x1))
        ih = max(0.0, min(self.y2, y2) - max(self.y1, y1))
        inter = iw * ih
        union = (self.x2 - self.x1) * (self.y2 - self.y1) + (x2 - x1) * (y2 - y1) - inter
        return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class MediaItem:
    """One committed file: where it is, its checksum and size, its kind, tags and known facts.

    ``facts`` is read-only (nested objects are read-only mappings, lists are tuples). The typed accessors
    (``fact_int``, ``fact_str``, ...) narrow a fact's type and raise ``MediaCatalogueError`` naming the file
    and key when it is missing or of another type.
    """

    name: str
    path: Path
    sha256: str
    size: int
    kind: str
    facts: Mapping[str, object]
    tags: tuple[str, ...] = ()
    relpath: str = ""
    origin: str = ""
    provenance: str = ""
    licence: str = ""

    def has_tag(self, tag: str) -> bool:
        """Whether the item carries the tag (its kind counts as a tag too)."""
        return tag == self.kind or tag in self.tags

    def fact(self, key: str) -> object:
        """The raw fact value; ``MediaCatalogueError`` if the item has no such fact."""
        try:
            return self.facts[key]
        except KeyError:
            known = ", ".join(sorted(self.facts))
            raise MediaCatalogueError(f"media item {self.name!r} has no fact {key!r} (it has: {known})") from None

    def _typed(self, key: str, value: object, expected: str) -> MediaCatalogueError:
        return MediaCatalogueError(
            f"media item {self.name!r}: fact {key!r} is {type(value).__name__} {value!r}, not {expected}"
        )

    def fact_str(self, key: str) -> str:
        """A string fact."""
        value = self.fact(key)
        if isinstance(value, str):
            return value
        raise self._typed(key, value, "str")

    def fact_int(self, key: str) -> int:
        """An integer fact (booleans are rejected)."""
        value = self.fact(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._typed(key, value, "int")

    def fact_float(self, key: str) -> float:
        """A numeric fact as float (ints are widened; booleans are rejected)."""
        value = self.fact(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self._typed(key, value, "float")

    def fact_bool(self, key: str) -> bool:
        """A boolean fact."""
        value = self.fact(key)
        if isinstance(value, bool):
            return value
        raise self._typed(key, value, "bool")

    def fact_mapping(self, key: str) -> Mapping[str, object]:
        """A nested object fact (read-only)."""
        value = self.fact(key)
        if isinstance(value, MappingProxyType):
            return cast("Mapping[str, object]", value)
        raise self._typed(key, value, "object")

    def fact_list(self, key: str) -> tuple[object, ...]:
        """A list fact (as a tuple)."""
        value = self.fact(key)
        if isinstance(value, tuple):
            return cast("tuple[object, ...]", value)
        raise self._typed(key, value, "list")

    @property
    def face_count(self) -> int:
        """Number of faces the item is known to show (0 for items without a ``faces`` fact)."""
        faces = self.facts.get("faces")
        if not isinstance(faces, MappingProxyType):
            return 0
        count = cast("Mapping[str, object]", faces).get("count")
        return count if isinstance(count, int) else 0

    def face_boxes(self) -> tuple[FaceBox, ...]:
        """The known rough face boxes (hand-placed from the composition, about +-0.05; not detector output)."""
        faces = self.facts.get("faces")
        if not isinstance(faces, MappingProxyType):
            return ()
        boxes = cast("Mapping[str, object]", faces).get("boxes")
        if not isinstance(boxes, tuple):
            return ()
        out: list[FaceBox] = []
        for raw in cast("tuple[object, ...]", boxes):
            box = _as_mapping(raw, f"{self.name}.faces.boxes")
            out.append(
                FaceBox(
                    x1=_as_float(box.get("x1"), f"{self.name}.faces x1"),
                    y1=_as_float(box.get("y1"), f"{self.name}.faces y1"),
                    x2=_as_float(box.get("x2"), f"{self.name}.faces x2"),
                    y2=_as_float(box.get("y2"), f"{self.name}.faces y2"),
                    identity=_as_str(box.get("identity"), f"{self.name}.faces identity"),
                )
            )
        return tuple(out)

    def read_bytes(self) -> bytes:
        """The file's bytes."""
        return self.path.read_bytes()

    def problem(self) -> str | None:
        """Why the file on disk does not match the manifest (missing, size, sha256), or None when it does."""
        if not self.path.is_file():
            return f"{self.name}: {self.path} is missing"
        size = self.path.stat().st_size
        if size != self.size:
            return f"{self.name}: {self.path} has {size} bytes, the manifest says {self.size}"
        digest = _sha256(self.path)
        if digest != self.sha256:
            return f"{self.name}: {self.path} has sha256 {digest}, the manifest says {self.sha256}"
        return None


@dataclass(frozen=True)
class MediaCatalogue:
    """All committed media items, in manifest order, with lookup by name and filters by kind and tag."""

    root: Path
    items: tuple[MediaItem, ...]
    generator: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    _by_name: Mapping[str, MediaItem] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, MediaItem] = {}
        for item in self.items:
            if item.name in by_name:
                raise MediaCatalogueError(f"duplicate media name {item.name!r} in {self.root / MANIFEST_NAME}")
            by_name[item.name] = item
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))

    def __getitem__(self, name: str) -> MediaItem:
        item = self._by_name.get(name)
        if item is None:
            raise MediaCatalogueError(
                f"no media item named {name!r} in {self.root / MANIFEST_NAME}; known: {', '.join(self.names())}"
            )
        return item

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._by_name

    def __iter__(self) -> Iterator[MediaItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, name: str) -> MediaItem | None:
        """The item with that name, or None."""
        return self._by_name.get(name)

    def names(self) -> tuple[str, ...]:
        """Every item name, in manifest order."""
        return tuple(item.name for item in self.items)

    def filter(
        self, *, kind: str | None = None, tag: str | None = None, tags: Iterable[str] = ()
    ) -> tuple[MediaItem, ...]:
        """Items of the given kind that carry the tag and every one of tags (all optional)."""
        wanted = [*([tag] if tag is not None else []), *tags]
        return tuple(
            item for item in self.items if (kind is None or item.kind == kind) and all(item.has_tag(t) for t in wanted)
        )

    def by_kind(self, kind: str) -> tuple[MediaItem, ...]:
        """Items of one kind: face, no_face, image, hostile, text, video, audio."""
        return self.filter(kind=kind)

    def with_tag(self, tag: str) -> tuple[MediaItem, ...]:
        """Items that carry the tag."""
        return self.filter(tag=tag)

    @property
    def total_size(self) -> int:
        """Sum of the recorded sizes, in bytes."""
        return sum(item.size for item in self.items)

    def problems(self) -> tuple[str, ...]:
        """Every mismatch between the files on disk and the manifest (empty when all match)."""
        return tuple(p for p in (item.problem() for item in self.items) if p is not None)

    def verify(self) -> None:
        """Check every file's presence, size and sha256; raise ``MediaIntegrityError`` listing all problems."""
        problems = self.problems()
        if problems:
            raise MediaIntegrityError(problems)


def default_root() -> Path:
    """``$CL_MEDIA_DIR`` if set, else the media shipped inside the ``pytest_cl`` package (``pytest_cl/media``).

    The packaged media are read through ``importlib.resources``, so they are found in a source checkout, an
    editable install and an installed wheel alike.

    Raises:
        MediaCatalogueError: the installed package's media are not plain files on disk (a zipped install).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    from importlib.resources import files

    packaged = files("pytest_cl").joinpath("media")
    if not isinstance(packaged, Path):
        raise MediaCatalogueError(
            f"the packaged test media ({packaged}) are not files on disk (a zipped install?): install cl-client "
            f"as a regular wheel, or point {ENV_VAR} at a folder holding manifest.json and its files"
        )
    return packaged


def load_catalogue(root: Path | None = None) -> MediaCatalogue:
    """Read ``<root>/manifest.json`` (root defaults to ``default_root()``) into a ``MediaCatalogue``.

    Nothing is hashed here; call ``verify()`` for that.
    """
    base = (root if root is not None else default_root()).resolve()
    manifest = base / MANIFEST_NAME
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MediaCatalogueError(
            f"no media manifest at {manifest}: point {ENV_VAR} at a folder holding manifest.json and its "
            f"files (unset it to use the media shipped with pytest_cl), or rebuild them with '{_REGENERATE}'"
        ) from None
    try:
        data = _as_mapping(cast("object", json.loads(text)), str(manifest))
    except json.JSONDecodeError as exc:
        raise MediaCatalogueError(f"{manifest} is not valid JSON: {exc}") from exc
    files = data.get("files")
    if not isinstance(files, list):
        raise MediaCatalogueError(f"{manifest}: 'files' must be a list")
    items = tuple(_item(base, raw, f"{manifest} files[{i}]") for i, raw in enumerate(cast("list[object]", files)))
    generator = _freeze(data.get("generator", {}))
    return MediaCatalogue(
        root=base,
        items=items,
        generator=cast("Mapping[str, object]", generator)
        if isinstance(generator, MappingProxyType)
        else MappingProxyType({}),
    )


# ------------------------------------------------------------------------------------------ narrowing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _as_mapping(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise MediaCatalogueError(f"{where}: expected an object, got {type(value).__name__}")
    out: dict[str, object] = {}
    for key, item in cast("Mapping[object, object]", value).items():
        if not isinstance(key, str):
            raise MediaCatalogueError(f"{where}: key {key!r} is not a string")
        out[key] = item
    return out


def _as_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise MediaCatalogueError(f"{where}: expected a string, got {value!r}")
    return value


def _as_int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MediaCatalogueError(f"{where}: expected an integer, got {value!r}")
    return value


def _as_float(value: object, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MediaCatalogueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _freeze(value: object) -> object:
    """JSON value -> read-only equivalent: objects become MappingProxyType, lists become tuples."""
    if isinstance(value, dict):
        obj = _as_mapping(cast("object", value), "facts")
        return MappingProxyType({k: _freeze(v) for k, v in obj.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in cast("list[object]", value))
    return value


def _item(base: Path, raw: object, where: str) -> MediaItem:
    row = _as_mapping(raw, where)
    relpath = _as_str(row.get("path"), f"{where}.path")
    if Path(relpath).is_absolute() or ".." in Path(relpath).parts:
        raise MediaCatalogueError(f"{where}.path {relpath!r} must be relative and inside the media folder")
    tags_raw = row.get("tags", [])
    if not isinstance(tags_raw, list):
        raise MediaCatalogueError(f"{where}.tags must be a list")
    facts = _freeze(_as_mapping(row.get("facts", {}), f"{where}.facts"))
    return MediaItem(
        name=_as_str(row.get("name"), f"{where}.name"),
        path=base / relpath,
        sha256=_as_str(row.get("sha256"), f"{where}.sha256"),
        size=_as_int(row.get("size"), f"{where}.size"),
        kind=_as_str(row.get("kind"), f"{where}.kind"),
        facts=cast("Mapping[str, object]", facts),
        tags=tuple(_as_str(t, f"{where}.tags") for t in cast("list[object]", tags_raw)),
        relpath=relpath,
        origin=_as_str(row.get("origin", ""), f"{where}.origin"),
        provenance=_as_str(row.get("provenance", ""), f"{where}.provenance"),
        licence=_as_str(row.get("licence", ""), f"{where}.licence"),
    )
