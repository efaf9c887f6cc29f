"""Stash keys of the plugin, in a module of their own so that they stay the same objects if the plugin module
is executed again (``importlib.reload``, used by the plugin's own tests to measure coverage)."""

from __future__ import annotations

import pytest

#: the plugin's per-config state (a ``pytest_cl.plugin._State``; cast there)
STATE = pytest.StashKey[object]()
TEST_PROPS = pytest.StashKey[dict[str, str]]()
NEEDS_FIX = pytest.StashKey[str]()
SECURITY = pytest.StashKey[str]()
