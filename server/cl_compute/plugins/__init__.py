"""Registry of the nine plugin backends: adding a tenth touches only ``PLUGIN_MODULES``."""

from __future__ import annotations

import importlib

from cl_compute.plugins.base import Plugin

#: task_type -> "module:ClassName"; modules must be light to import (see base.py).
PLUGIN_MODULES: dict[str, str] = {
    "clip_embedding": "cl_compute.plugins.clip_embedding:ClipEmbeddingPlugin",
    "dino_embedding": "cl_compute.plugins.dino_embedding:DinoEmbeddingPlugin",
    "exif": "cl_compute.plugins.exif:ExifPlugin",
    "face_detection": "cl_compute.plugins.face_detection:FaceDetectionPlugin",
    "face_embedding": "cl_compute.plugins.face_embedding:FaceEmbeddingPlugin",
    "hash": "cl_compute.plugins.hash:HashPlugin",
    "hls_streaming": "cl_compute.plugins.hls_streaming:HlsStreamingPlugin",
    "image_conversion": "cl_compute.plugins.image_conversion:ImageConversionPlugin",
    "media_thumbnail": "cl_compute.plugins.media_thumbnail:MediaThumbnailPlugin",
}


def plugin_names() -> list[str]:
    """All task types this deployment knows, sorted."""
    return sorted(PLUGIN_MODULES)


def get_plugin(task_type: str) -> Plugin:
    """Instantiate the plugin for ``task_type`` (no heavy loading). Raises KeyError if unknown."""
    module_name, _, class_name = PLUGIN_MODULES[task_type].partition(":")
    module = importlib.import_module(module_name)
    cls: type[Plugin] = getattr(module, class_name)
    return cls()
