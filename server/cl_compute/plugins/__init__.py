"""Registry of the nine plugin backends: adding a tenth touches only ``PLUGIN_MODULES``.

Extra plugins (for example test-only ``sleep``/``fail`` plugins) are registered without touching this file:

* in Python: ``register_plugin("sleep", "my_tests.plugins:SleepPlugin")``, or
* through the environment: ``CL_COMPUTE_EXTRA_PLUGINS="sleep=my_tests.plugins:SleepPlugin,fail=/abs/p.py:Fail"``
  (read by every ``cl_compute`` process, so API server and workers agree; ``Deployment(extra_plugins=...)``
  sets it for the processes it starts).

A spec is ``module.path:ClassName`` or ``/path/to/file.py:ClassName`` (a file is imported under a private
module name, so test plugins need no package).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import cast

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

#: Environment variable naming extra plugins: ``task_type=spec,task_type=spec``.
EXTRA_PLUGINS_ENV = "CL_COMPUTE_EXTRA_PLUGINS"

_extra: dict[str, str] = {}


def parse_extra_plugins(value: str) -> dict[str, str]:
    """Parse ``"a=mod:Cls,b=/x.py:Cls"`` into ``{"a": "mod:Cls", "b": "/x.py:Cls"}``.

    Raises:
        ValueError: an entry lacks ``=`` or ``:``.
    """
    result: dict[str, str] = {}
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, spec = entry.partition("=")
        if not sep or ":" not in spec or not name.strip():
            raise ValueError(f"bad {EXTRA_PLUGINS_ENV} entry {entry!r}: expected task_type=module:Class")
        result[name.strip()] = spec.strip()
    return result


def format_extra_plugins(plugins: dict[str, str]) -> str:
    """Inverse of :func:`parse_extra_plugins` (for passing registrations to child processes)."""
    return ",".join(f"{name}={spec}" for name, spec in plugins.items())


def register_plugin(task_type: str, spec: str) -> None:
    """Register (or replace) a plugin in this process. ``spec`` is ``module:Class`` or ``/file.py:Class``."""
    if ":" not in spec:
        raise ValueError(f"bad plugin spec {spec!r}: expected module:Class")
    _extra[task_type] = spec


def all_plugin_modules() -> dict[str, str]:
    """The nine built-in plugins plus the extra ones (``register_plugin`` and the environment)."""
    merged = dict(PLUGIN_MODULES)
    env = os.environ.get(EXTRA_PLUGINS_ENV, "")
    if env:
        merged.update(parse_extra_plugins(env))
    merged.update(_extra)
    return merged


def plugin_names() -> list[str]:
    """All task types this deployment knows (built-in and extra), sorted."""
    return sorted(all_plugin_modules())


def _import_module(module_name: str) -> ModuleType:
    if module_name.endswith(".py") or os.sep in module_name:
        path = os.path.abspath(module_name)
        private = "_cl_compute_extra_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        if private in sys.modules:
            return sys.modules[private]
        spec = importlib.util.spec_from_file_location(private, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[private]
            raise
        return module
    return importlib.import_module(module_name)


def get_plugin_class(task_type: str) -> type[Plugin]:
    """The plugin class for ``task_type``: its module is imported (light, see base.py), nothing instantiated.

    Raises:
        KeyError: unknown task type.
        ImportError / AttributeError: the plugin module or class cannot be imported.
    """
    module_name, _, class_name = all_plugin_modules()[task_type].rpartition(":")
    module = _import_module(module_name)
    # A dynamic lookup: the spec names a Plugin subclass (instantiating anything else fails later).
    return cast("type[Plugin]", getattr(module, class_name))


def get_plugin(task_type: str) -> Plugin:
    """Instantiate the plugin for ``task_type`` (no heavy loading).

    Raises:
        KeyError: unknown task type.
        ImportError / AttributeError: the plugin module or class cannot be imported.
    """
    return get_plugin_class(task_type)()
