"""A slow plugin for the private deployments of the worker-death and cancellation checks (embedded runs only).

Registered as task type ``cl_conformance_slow`` through ``Deployment(extra_plugins=...)``; imported only by the
private deployment's processes, which have ``cl_compute``. Form fields: ``seconds`` (float, default 10) and
``steps`` (int, default 20). Each step sleeps ``seconds / steps``, writes one 4 KiB file
``output/part-<n>.bin`` (recreating ``output/`` if a deletion removed it) and reports progress, so a deployment
that does not stop a deleted job keeps writing files and holding its worker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from cl_compute.plugins.base import ParamError, Plugin, TaskContext
from pytest_cl.conformance.protocol._slow_plugin_name import SLOW_TASK as TASK_TYPE


def _number(form: Mapping[str, str], name: str, default: float) -> float:
    raw = form.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ParamError(name, "Input should be a valid number", "float_parsing") from None


class SlowPlugin(Plugin):
    """Sleeps in steps, writing a file and reporting progress at each step."""

    task_type = TASK_TYPE

    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """``seconds`` ≥ 0 and ``steps`` ≥ 1; the output folder is ``output``."""
        seconds = _number(form, "seconds", 10.0)
        if seconds < 0:
            raise ParamError("seconds", "Input should be greater than or equal to 0", "greater_than_equal")
        return {"seconds": seconds, "steps": max(1, int(_number(form, "steps", 20))), "output_path": "output"}

    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Sleep, write and report, step by step; returns how many files were written."""
        seconds = float(str(ctx.params["seconds"]))
        steps = int(str(ctx.params["steps"]))
        for i in range(steps):
            time.sleep(seconds / steps)
            out = ctx.output("output")
            out.mkdir(parents=True, exist_ok=True)
            (out / f"part-{i:04d}.bin").write_bytes(b"\0" * 4096)
            ctx.report_progress(int(100 * (i + 1) / steps))
        return {"files": steps}
