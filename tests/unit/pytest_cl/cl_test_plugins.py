"""Test-only cl_compute plugins for the pytest_cl tests (registered through ``extra_plugins``).

* ``sleep``: form ``seconds`` (float, default 0), ``steps`` (int, default 4): sleeps in steps reporting
  progress, so a deleted job is cancelled at the next step.
* ``fail``: reports 30 % then fails with form ``message``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from cl_compute.plugins.base import BackendUnavailable, Plugin, PluginError, TaskContext


class SleepPlugin(Plugin):
    task_type = "sleep"

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        return {
            "seconds": float(form.get("seconds") or 0),
            "steps": max(1, int(form.get("steps") or 4)),
            "output_path": "output",
        }

    def run(self, ctx: TaskContext) -> dict[str, object]:
        seconds = float(ctx.params["seconds"])  # type: ignore[arg-type]
        steps = int(ctx.params["steps"])  # type: ignore[call-overload]
        for i in range(steps):
            time.sleep(seconds / steps)
            ctx.report_progress(int(100 * (i + 1) / steps))
        return {"slept": seconds}


class FailPlugin(Plugin):
    task_type = "fail"

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        return {"message": form.get("message") or "deliberate failure", "output_path": "output"}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        ctx.report_progress(30)
        raise PluginError(str(ctx.params["message"]))


def extra_plugins() -> dict[str, str]:
    """``extra_plugins`` for a Deployment (also the ``--cl-embedded-plugins`` spec)."""
    path = __file__
    return {"sleep": f"{path}:SleepPlugin", "fail": f"{path}:FailPlugin"}


class UnloadablePlugin(Plugin):
    """``unloadable``: its backend never loads, so no worker can announce it (a missing capability)."""

    task_type = "unloadable"

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        return {"output_path": "output"}

    def load(self) -> None:
        raise BackendUnavailable("the unloadable test backend is missing on purpose")

    def run(self, ctx: TaskContext) -> dict[str, object]:
        raise PluginError("never runs")
