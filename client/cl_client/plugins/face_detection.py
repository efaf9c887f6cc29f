"""face_detection: faces with boxes, landmarks and aligned 112x112 crops (``output/face_detection.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, cast

from pydantic import JsonValue

from cl_client._exceptions import ComputeClientError
from cl_client._models import JobResponse
from cl_client._tracker import JobCallback
from cl_client.plugins._base import OutT_co, PathLike, PluginClient, PluginResult, PluginSpec
from cl_client.plugins._fields import FloatField
from cl_client.plugins._files import JobFiles, Plan, safe_relative, save
from cl_client.plugins._parse import as_float, as_int, as_str, output_file, read_json_object

LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")


@dataclass(frozen=True)
class BoundingBox:
    """A face box with corners normalised to [0, 1], top-left origin.

    Attributes:
        x1, y1: top-left corner.
        x2, y2: bottom-right corner.
    """

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        """Normalised width."""
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        """Normalised height."""
        return self.y2 - self.y1

    def to_pixels(self, image_width: int, image_height: int) -> tuple[int, int, int, int]:
        """Return the box in pixels ``(x1, y1, x2, y2)``, rounded and clamped to the image."""

        def px(v: float, size: int) -> int:
            return min(size, max(0, round(v * size)))

        return (
            px(self.x1, image_width),
            px(self.y1, image_height),
            px(self.x2, image_width),
            px(self.y2, image_height),
        )


@dataclass(frozen=True)
class DetectedFace:
    """One face.

    Attributes:
        index: position in the result (crop ``faces/face_<index>.png``).
        bbox: the normalised box.
        confidence: detector score 0..1.
        landmarks: name -> normalised ``(x, y)`` (the person's right/left; may lie slightly outside [0,1]).
        file_path: the aligned crop in the job directory (None if the server made none).
        image_width, image_height: size of the input image in pixels.
    """

    index: int
    bbox: BoundingBox
    confidence: float
    landmarks: dict[str, tuple[float, float]]
    file_path: str | None
    image_width: int
    image_height: int

    def pixel_bbox(self) -> tuple[int, int, int, int]:
        """Return the box in pixels of the input image."""
        return self.bbox.to_pixels(self.image_width, self.image_height)

    def pixel_landmarks(self) -> dict[str, tuple[float, float]]:
        """Return the landmarks in pixels of the input image (not clamped)."""
        return {k: (x * self.image_width, y * self.image_height) for k, (x, y) in self.landmarks.items()}

    def as_dict(self) -> dict[str, JsonValue]:
        """JSON-ready data (normalised and pixel boxes)."""
        return {
            "bbox": {"x1": self.bbox.x1, "y1": self.bbox.y1, "x2": self.bbox.x2, "y2": self.bbox.y2},
            "bbox_pixels": list(self.pixel_bbox()),
            "confidence": self.confidence,
            "landmarks": {k: [x, y] for k, (x, y) in self.landmarks.items()},
            "file_path": self.file_path,
        }


@dataclass(frozen=True, kw_only=True)
class FaceDetectionResult(PluginResult):
    """The faces found in an image.

    Attributes:
        faces: the faces in the server's order.
        image_width, image_height: the input's size in pixels.
        output_path: the JSON file in the job directory.
    """

    faces: tuple[DetectedFace, ...]
    image_width: int
    image_height: int
    output_path: str = field(default="output/face_detection.json")

    @property
    def num_faces(self) -> int:
        """How many faces were found."""
        return len(self.faces)

    def _crop_plan(self, indices: Sequence[int], dest: Path, *, single: bool) -> Plan[list[Path]]:
        written: list[Path] = []
        for i in indices:
            if not 0 <= i < len(self.faces):
                raise IndexError(f"face index {i} out of range (job {self.job_id} has {len(self.faces)} faces)")
            face = self.faces[i]
            if face.file_path is None:
                raise ComputeClientError(f"job {self.job_id}: face {i} has no crop file")
            rel = safe_relative(face.file_path, where=f"job {self.job_id} faces[{i}].file_path")
            target = dest if single else dest / rel.rsplit("/", 1)[-1]
            written.append((yield from save(rel, target)))
        return written

    def _all_crops_plan(self, dest: Path) -> Plan[list[Path]]:
        return self._crop_plan(range(len(self.faces)), dest, single=False)

    def download_crops(self, dest: PathLike) -> list[Path]:
        """Download every aligned crop (``face_<i>.png``) into the folder ``dest`` (created if needed).

        All or nothing: the crops are staged beside ``dest`` and moved in once every one arrived.

        Raises:
            ComputeClientError: a crop is missing on the server (nothing is left in ``dest``).
        """
        return self.files.run_into(dest, self._all_crops_plan)

    async def adownload_crops(self, dest: PathLike) -> list[Path]:
        """Async ``download_crops`` (all or nothing too)."""
        return await self.files.arun_into(dest, self._all_crops_plan)

    def download_crop(self, index: int, dest: PathLike) -> Path:
        """Download the crop of face ``index`` to ``dest`` (a file, or a folder to keep its name).

        Raises:
            IndexError: no such face.
        """
        return self.files.run(self._crop_plan([index], Path(dest), single=True))[0]

    async def adownload_crop(self, index: int, dest: PathLike) -> Path:
        """Async ``download_crop``."""
        return (await self.files.arun(self._crop_plan([index], Path(dest), single=True)))[0]

    def _outputs_plan(self, dest: Path) -> Plan[list[Path]]:
        written = [(yield from save(self.output_path, dest / self.output_path.rsplit("/", 1)[-1]))]
        crops = dest / "faces"
        if self.faces:
            crops.mkdir(exist_ok=True)
        indices = [i for i, f in enumerate(self.faces) if f.file_path is not None]
        written += yield from self._crop_plan(indices, crops, single=False)
        return written

    def summary(self) -> str:
        """Return e.g. ``2 faces (0.99, 0.97)``."""
        scores = ", ".join(f"{f.confidence:.2f}" for f in self.faces)
        return f"{self.num_faces} face{'s' if self.num_faces != 1 else ''}" + (f" ({scores})" if scores else "")

    def as_dict(self) -> dict[str, JsonValue]:
        """num_faces, image size and the faces."""
        return {
            "num_faces": self.num_faces,
            "image_width": self.image_width,
            "image_height": self.image_height,
            "faces": [f.as_dict() for f in self.faces],
        }


def _point(value: JsonValue) -> tuple[float, float] | None:
    if isinstance(value, list) and len(value) == 2:
        x, y = as_float(value[0]), as_float(value[1])
        if x is not None and y is not None:
            return (x, y)
    return None


def _bbox(value: JsonValue, face: dict[str, JsonValue]) -> BoundingBox | None:
    if isinstance(value, dict):
        coords = [as_float(value.get(k)) for k in ("x1", "y1", "x2", "y2")]
    elif isinstance(value, list) and len(value) == 4:
        coords = [as_float(v) for v in value]
    else:  # the Server-Dec flat form {"x1",...,"confidence"}
        coords = [as_float(face.get(k)) for k in ("x1", "y1", "x2", "y2")]
    if any(c is None for c in coords):
        return None
    x1, y1, x2, y2 = cast(list[float], coords)
    return BoundingBox(x1, y1, x2, y2)


def _face(index: int, item: JsonValue, width: int, height: int, where: str) -> DetectedFace:
    if not isinstance(item, dict):
        raise ComputeClientError(f"{where}: faces[{index}] is not an object")
    box = _bbox(item.get("bbox"), item)
    if box is None:
        raise ComputeClientError(f"{where}: faces[{index}] has no valid bbox")
    marks: dict[str, tuple[float, float]] = {}
    raw = item.get("landmarks")
    if isinstance(raw, dict):
        for name in LANDMARK_NAMES:
            point = _point(raw.get(name))
            if point is not None:
                marks[name] = point
    elif isinstance(raw, list) and len(raw) == len(LANDMARK_NAMES):
        for name, value in zip(LANDMARK_NAMES, raw, strict=True):
            point = _point(value)
            if point is not None:
                marks[name] = point
    return DetectedFace(
        index=index,
        bbox=box,
        confidence=as_float(item.get("confidence")) or 0.0,
        landmarks=marks,
        file_path=as_str(item.get("file_path")),
        image_width=width,
        image_height=height,
    )


def build(record: JobResponse, files: JobFiles) -> Plan[FaceDetectionResult]:
    """Read ``face_detection.json`` into a ``FaceDetectionResult``."""
    path = output_file(record, "output/face_detection.json")
    data = yield from read_json_object(record, path)
    where = f"job {record.job_id} {path}"
    raw_faces = data.get("faces")
    if not isinstance(raw_faces, list):
        raise ComputeClientError(f"{where}: 'faces' is not a list")
    width = as_int(data.get("image_width")) or 0
    height = as_int(data.get("image_height")) or 0
    faces = tuple(_face(i, item, width, height, where) for i, item in enumerate(raw_faces))
    return FaceDetectionResult(
        job=record, files=files, faces=faces, image_width=width, image_height=height, output_path=path
    )


SPEC: PluginSpec[FaceDetectionResult] = PluginSpec(
    task_type="face_detection",
    fields=(
        FloatField("confidence_threshold", "minimum detector score", value_default=0.7),
        FloatField("nms_threshold", "overlap threshold of non-maximum suppression", value_default=0.4),
    ),
    build=build,
    method="detect",
    command="detect",
    metavar="IMAGE",
    summary="faces with boxes, landmarks and aligned crops",
)


class FaceDetectionClient(PluginClient[OutT_co]):
    """``client.face_detection``: face detection; ``result()`` gives a ``FaceDetectionResult``."""

    TASK_TYPE: ClassVar[str] = "face_detection"

    def detect(
        self,
        image: PathLike,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        *,
        confidence_threshold: float = 0.7,
        nms_threshold: float = 0.4,
        priority: int | None = None,
        filename: str | None = None,
    ) -> OutT_co:
        """Detect faces in an image.

        Args:
            image: the image file.
            wait: wait for the job to end before returning (a failed job is returned, not raised).
            timeout: seconds ``wait`` may take.
            on_progress: called with a JobResponse on every update.
            on_complete: called once with the final JobResponse.
            confidence_threshold: minimum score 0..1 (default 0.7).
            nms_threshold: non-maximum-suppression overlap 0..1 (default 0.4).
            priority: 0-10.
            filename: upload name.

        Returns:
            ``PluginJob[FaceDetectionResult]`` (awaitable ``AsyncPluginJob`` on the async client).

        Raises:
            ConfigurationError: a bad argument (nothing sent). FileNotFoundError: no such image.
        """
        params: dict[str, object] = {"confidence_threshold": confidence_threshold, "nms_threshold": nms_threshold}
        return self.submit(
            image, params, priority=priority, wait=wait, timeout=timeout,
            on_progress=on_progress, on_complete=on_complete, filename=filename,
        )  # fmt: skip
