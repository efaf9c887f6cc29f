"""The ``server`` extra: its import names, the install hint, and telling "the extra is not installed" apart
from other import errors. Standard library only: the CLI and a worker's executor use it without the extra.
"""

from __future__ import annotations

from collections.abc import Iterable

INSTALL_HINT = 'pip install "cl-client[server]"'

#: top-level import names of the ``server`` extra's packages: a missing one means the extra is not installed.
SERVER_EXTRA_MODULES = frozenset(
    {
        "fastapi", "starlette", "uvicorn", "multipart", "python_multipart", "jwt", "cryptography", "PIL", "cv2",
        "skimage", "imageio_ffmpeg", "av", "magic", "mtcnn", "dlib", "face_recognition_models", "onnxruntime",
        "amqtt", "pillow_heif",
    }
)  # fmt: skip


def missing_extra_module(exc: BaseException | None) -> str | None:
    """The ``server`` extra module whose absence caused ``exc``, or None.

    ``exc`` itself or an exception it was raised from or while handling (``__cause__`` / ``__context__``: a
    plugin's ``load()`` turns ``ImportError`` into ``BackendUnavailable``) must be a ``ModuleNotFoundError``
    for one of :data:`SERVER_EXTRA_MODULES`.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError):
            root = (exc.name or "").partition(".")[0]
            if root in SERVER_EXTRA_MODULES:
                return root
        exc = exc.__cause__ or exc.__context__
    return None


def missing_extra_message(modules: Iterable[str]) -> str:
    """``the server extra is not installed (no module named 'X'); install it with: pip install …``."""
    names = sorted(set(modules))
    what = f"module named {names[0]!r}" if len(names) == 1 else "modules named " + ", ".join(map(repr, names))
    return f"the server extra is not installed (no {what}); install it with: {INSTALL_HINT}"
