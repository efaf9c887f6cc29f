"""Registry of the nine plugin backends: adding a tenth touches only ``PLUGIN_MODULES``."""

from __future__ import annotations

import importlib

from cl_compute.plugins.base import Plugin

#: task_type -> "module:ClassName"; modules must be light to import (see base.py).
PLUGIN_MODULES: dict[str, str] = {}


def plugin_names() -> list[str]:
    """All task types this deployment knows, sorted."""
    return sorted(PLUGIN_MODULES)


def get_plugin(task_type: str) -> Plugin:
    """Instantiate the plugin for ``task_type`` (no heavy loading). Raises KeyError if unknown."""
    module_name, _, class_name = PLUGIN_MODULES[task_type].partition(":")
    module = importlib.import_module(module_name)
    cls: type[Plugin] = getattr(module, class_name)
    return cls()
