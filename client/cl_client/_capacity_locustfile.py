"""The capacity-search locustfile (``cl-client load --find-capacity`` runs it): paced users and a stepped shape.

``CapacityUser`` runs the jobs of ``--cl-mix`` like the packaged locustfile's user, but each user starts one job
per ``--cl-pace`` seconds (Locust's ``constant_throughput``), so users x 1/pace is the offered jobs/s.
``CapacityShape`` (on the master, or the single process) raises the users step by step (``cl_client._capacity``),
judges each step against ``--cl-slo`` from the jobs that ended in its measured window, and stops at the first
step that breaks it; at the end it writes the steps as JSON to ``--cl-capacity PATH``.

Which jobs ended when: every process records its ``JOB`` requests (end time, plugin, latency, outcome); a worker
sends its new ones with each report to the master (``report_to_master``), the master collects them
(``worker_report``). A step is judged ``lag`` seconds after it ended, so that the workers' reports (every 3 s)
have arrived; the next step runs meanwhile.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from locust import LoadTestShape, constant_throughput, events
from locust.runners import MasterRunner, WorkerRunner

from cl_client._capacity import CapacityReport, Done, Objective, Ramp, Step, measure
from cl_client._load import JOB, parse_mix
from cl_client.locust import ComputeUser

if TYPE_CHECKING:
    from collections.abc import Callable

    from locust.env import Environment

#: seconds after a step's end before it is judged (a worker reports every 3 s).
REPORT_LAG = 4.0
_DONE: list[Done] = []
#: a worker's ended jobs not yet sent to the master (only a worker keeps them: ``_on_init``)
_UNSENT: list[list[object]] = []
_ROLE = {"worker": False}


def _option(environment: Environment, name: str) -> object:
    return cast(object, getattr(environment.parsed_options, name, None))


class CapacityUser(ComputeUser):
    """Runs the jobs of ``--cl-mix``, one every ``--cl-pace`` seconds per user (the offered rate is users/pace)."""

    abstract = True

    def wait_time(self) -> float:
        """Seconds until this user's next job (``constant_throughput(1 / pace)``)."""
        pace = float(cast(float, _option(cast("Environment", self.environment), "cl_pace")) or 4.0)
        return float(constant_throughput(1 / pace)(self))


class CapacityShape(LoadTestShape):
    """Raises the users step by step and stops at the first step that breaks the objective (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self._t0: float | None = None
        self._steps: list[Step] = []
        self._stop = False

    def _settings(self) -> tuple[Ramp, Objective, list[int]]:
        env = self.runner.environment if self.runner is not None else None
        if env is None:
            raise RuntimeError("the shape has no runner")

        def num(name: str, default: float) -> float:
            value = _option(env, name)
            return float(cast(float, value)) if value is not None else default

        objective = Objective.parse(str(_option(env, "cl_slo") or "p95=2s"))
        ramp = Ramp(
            start=num("cl_rate_start", 1.0), factor=num("cl_rate_factor", 1.5), step_time=num("cl_step_time", 30),
            settle=num("cl_settle", 10), max_steps=int(num("cl_max_steps", 12)), pace=num("cl_pace", 4.0),
        )  # fmt: skip
        return ramp, objective, ramp.users()

    def tick(self) -> tuple[int, float] | None:
        """The users and spawn rate now, or None to stop (past the knee, or after the last step)."""
        ramp, objective, users = self._settings()
        now = time.time()
        if self._t0 is None:
            self._t0 = now
        lag = REPORT_LAG if isinstance(self.runner, MasterRunner) else 0.5
        while len(self._steps) < len(users) and not self._stop:
            j = len(self._steps)
            end = self._t0 + (j + 1) * ramp.step_time
            if now < end + lag:
                break
            step = measure(j + 1, users[j], ramp.offered(users[j]), _DONE, end - ramp.step_time + ramp.settle, end,
                           objective)  # fmt: skip
            self._steps.append(step)
            verdict = "met" if step.met else f"BROKE ({'; '.join(step.broken)}; {step.culprit or '-'})"
            print(
                f"cl-client load: step {step.index}: {step.users} users, offered {step.offered:.2f} jobs/s, "
                f"achieved {step.total.rate:.2f}, p95 {step.total.p95:.0f} ms, failed {step.total.failed}: {verdict}",
                file=sys.stderr,
                flush=True,
            )
            self._stop = not step.met
        if self._stop or len(self._steps) >= len(users):
            return None
        k = min(int((now - self._t0) // ramp.step_time), len(users) - 1)
        previous = users[k - 1] if k else 0
        return users[k], max(1.0, math.ceil((users[k] - previous) / ramp.pace))

    def report(self, mix: str, objective: str) -> CapacityReport:
        """The steps measured so far as a report (no meta: the command adds it)."""
        return CapacityReport(tuple(self._steps), objective, mix)


# -- Locust hooks -------------------------------------------------------------------------------------------
def _add_options(parser: object, **_: object) -> None:
    add = cast("Callable[..., object]", getattr(parser, "add_argument"))  # noqa: B009 - untyped configargparse
    add("--cl-slo", default="p95=2s", help="Capacity objective, e.g. p95=2s,errors=0", env_var="LOCUST_CL_SLO")
    add("--cl-pace", type=float, default=4.0, help="Seconds between one user's job starts",
        env_var="LOCUST_CL_PACE")  # fmt: skip
    add("--cl-rate-start", type=float, default=1.0, help="First step's jobs/s", env_var="LOCUST_CL_RATE_START")
    add("--cl-rate-factor", type=float, default=1.5, help="Step growth", env_var="LOCUST_CL_RATE_FACTOR")
    add("--cl-step-time", type=float, default=30.0, help="Seconds a step", env_var="LOCUST_CL_STEP_TIME")
    add("--cl-settle", type=float, default=10.0, help="Unmeasured seconds a step", env_var="LOCUST_CL_SETTLE")
    add("--cl-max-steps", type=int, default=12, help="Most steps", env_var="LOCUST_CL_MAX_STEPS")
    add("--cl-capacity", default=None, help="Write the steps as JSON here", env_var="LOCUST_CL_CAPACITY")


def _on_request(request_type: str, name: str, response_time: float, exception: object = None, **_: object) -> None:
    if request_type != JOB:
        return
    at = time.time()
    _DONE.append(Done(at, name, float(response_time), exception is not None))
    if _ROLE["worker"]:
        _UNSENT.append([at, name, float(response_time), exception is not None])


def _on_init(environment: Environment, **_: object) -> None:
    _ROLE["worker"] = isinstance(environment.runner, WorkerRunner)


def _on_report_to_master(client_id: str, data: dict[str, object], **_: object) -> None:
    del client_id
    data["cl_done"] = list(_UNSENT)
    _UNSENT.clear()


def _on_worker_report(client_id: str, data: dict[str, object], **_: object) -> None:
    del client_id
    for at, name, ms, failed in cast("list[list[object]]", data.get("cl_done") or []):
        _DONE.append(Done(float(cast(float, at)), str(name), float(cast(float, ms)), bool(failed)))


def _on_quitting(environment: Environment, **_: object) -> None:
    path = cast(str | None, _option(environment, "cl_capacity"))
    shape = environment.shape_class
    if not path or isinstance(environment.runner, WorkerRunner) or not isinstance(shape, CapacityShape):
        return
    mix = ",".join(f"{n}={w}" for n, w in parse_mix(str(_option(environment, "cl_mix") or "")).items())
    report = shape.report(mix, Objective.parse(str(_option(environment, "cl_slo") or "p95=2s")).text())
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report.to_json(), encoding="utf-8")


for _hook, _listener in (
    (events.init_command_line_parser, _add_options),
    (events.init, _on_init),
    (events.request, _on_request),
    (events.report_to_master, _on_report_to_master),
    (events.worker_report, _on_worker_report),
    (events.quitting, _on_quitting),
):
    cast("Callable[[Callable[..., None]], object]", _hook.add_listener)(_listener)


class PluginMixCapacityUser(CapacityUser):
    """The capacity search's user: the jobs of ``--cl-mix`` against ``--host``, one per ``--cl-pace`` seconds."""
