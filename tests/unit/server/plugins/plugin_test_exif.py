"""The exif backends the plugin tests run with (``CL_COMPUTE_EXIF_BACKEND``); exiftool only where it is installed."""

from __future__ import annotations

import shutil

import pytest

HAVE_EXIFTOOL = shutil.which("exiftool") is not None
BACKENDS = [
    pytest.param("exiftool", marks=pytest.mark.skipif(not HAVE_EXIFTOOL, reason="exiftool not on PATH")),
    "python",
]
