"""Test-only plugins for the cl_compute server tests (registered through CL_COMPUTE_EXTRA_PLUGINS).

* ``sleep``: form ``seconds`` (float, default 0), ``steps`` (int, default 10); sleeps in steps reporting
  progress (so a delete cancels it); writes ``output/sleep.json``.
* ``hang``: sleeps ``seconds`` without reporting progress (time-limit tests).
* ``spawn``: starts ``sleep <seconds>`` as a subprocess, writes its pid to ``output/child.pid`` and waits.
* ``fail``: raises PluginError with form ``message``.
* ``crash``: the executor process dies (``os._exit(form code)``).
* ``echo``: writes ``output/echo.json`` (params) and ``faces/face_0.png``; returns ``{"size": bytes}``.
* ``unavailable``: ``load()`` raises BackendUnavailable.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from typing import ClassVar

from cl_compute.plugins.base import BackendUnavailable, ParamError, Plugin, PluginError, TaskContext


def _float(form: Mapping[str, str], name: str, default: float) -> float:
    raw = form.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ParamError(name, "Input should be a valid number", "float_parsing") from None


class SleepPlugin(Plugin):
    task_type = "sleep"
    details: ClassVar[Mapping[str, str]] = {"kind": "test sleep"}

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        seconds = _float(form, "seconds", 0.0)
        if seconds < 0:
            raise ParamError("seconds", "Input should be greater than or equal to 0", "greater_than_equal")
        steps = int(_float(form, "steps", 10))
        return {"seconds": seconds, "steps": max(1, steps), "output_path": "output/sleep.json"}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        seconds = float(ctx.params["seconds"])  # type: ignore[arg-type]
        steps = int(ctx.params["steps"])  # type: ignore[call-overload]
        for i in range(steps):
            time.sleep(seconds / steps)
            ctx.report_progress(int(100 * (i + 1) / steps))
        ctx.output("output/sleep.json").write_text(json.dumps({"slept": seconds}))
        return {"slept": seconds}


class HangPlugin(SleepPlugin):
    task_type = "hang"

    def run(self, ctx: TaskContext) -> dict[str, object]:
        time.sleep(float(ctx.params["seconds"]))  # type: ignore[arg-type]
        return {}


class SpawnPlugin(SleepPlugin):
    task_type = "spawn"

    def run(self, ctx: TaskContext) -> dict[str, object]:
        child = subprocess.Popen(["sleep", str(ctx.params["seconds"])])
        ctx.output("output/child.pid").write_text(str(child.pid))
        while child.poll() is None:
            time.sleep(0.05)
            ctx.report_progress(1)
        return {}


class FailPlugin(Plugin):
    task_type = "fail"

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        return {"message": form.get("message", "") or "deliberate failure", "output_path": "output"}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        ctx.report_progress(40)
        raise PluginError(str(ctx.params["message"]))


class CrashPlugin(Plugin):
    task_type = "crash"

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        return {"code": int(_float(form, "code", 3)), "output_path": "output"}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        os._exit(int(ctx.params["code"]))  # type: ignore[call-overload]


class EchoPlugin(Plugin):
    task_type = "echo"
    details: ClassVar[Mapping[str, str]] = {"kind": "test echo"}

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        mode = form.get("mode", "") or "plain"
        if mode not in ("plain", "fancy"):
            raise ParamError("mode", "Input should be 'plain' or 'fancy'", "literal_error")
        return {"mode": mode, "output_path": "output/echo.json"}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        ctx.output("output/echo.json").write_text(json.dumps(dict(ctx.params)))
        # a 1x1 PNG
        ctx.output("faces/face_0.png").write_bytes(
            bytes.fromhex(
                "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cf"
                "c0f01f0005000201a0b3a1b60000000049454e44ae426082"
            )
        )
        return {"size": ctx.input_path.stat().st_size, "mode": ctx.params["mode"]}


class UnavailablePlugin(EchoPlugin):
    task_type = "unavailable"

    def load(self) -> None:
        raise BackendUnavailable("this backend never loads (test plugin)")


TEST_PLUGINS = {
    "sleep": "SleepPlugin",
    "hang": "HangPlugin",
    "spawn": "SpawnPlugin",
    "fail": "FailPlugin",
    "crash": "CrashPlugin",
    "echo": "EchoPlugin",
    "unavailable": "UnavailablePlugin",
}


def extra_plugins_spec() -> dict[str, str]:
    """``{task_type: "/abs/path/testing_plugins.py:Class"}`` for Deployment(extra_plugins=...)."""
    path = os.path.abspath(__file__)
    return {name: f"{path}:{cls}" for name, cls in TEST_PLUGINS.items()}
