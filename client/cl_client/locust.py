"""Load tests of a compute deployment on Locust: ``ComputeUser``, a Locust ``User`` backed by ``ComputeClient``.

Needs the ``load`` extra (``pip install "cl-client[load]"``). Importing this module imports Locust, and Locust
monkey-patches the standard library with gevent at import time; so ``import cl_client`` never imports it, and
this module is meant to be imported by a locustfile that the ``locust`` command runs (Locust is then imported
first, before the standard library modules it patches are used)::

    # locustfile.py
    from cl_client.locust import ComputeUser

    class Mix(ComputeUser):
        mix = "hash=5,exif=2"        # or --cl-mix on the command line

    $ locust -f locustfile.py --host http://127.0.0.1:8002 --cl-mqtt mqtt://127.0.0.1:1883

The packaged locustfile (``python -m cl_client.locust`` prints its path) defines one such user whose mix comes
from ``--cl-mix``; ``cl-client load`` runs it. Each task submits one plugin job on a committed test file with a
known answer, waits for its terminal state (by MQTT), checks the result cheaply and deletes the job; each job is
one Locust request (``JOB``, name = plugin, response time = submit → terminal state, failure = ``error``,
time-out or a wrong result), the ``POST`` and the ``DELETE`` are their own entries (``SUBMIT``, ``DELETE``), so
Locust's statistics, CSV, HTML report and web UI work as for any Locust test. See ``cl_client._load``.

Options added to Locust's command line (also ``LOCUST_CL_*`` variables and config-file keys; the master sends
them to its workers):

* ``--cl-mix hash=5,exif=2`` the plugin mix (weights);
* ``--cl-mqtt URL|off`` the broker (default ``CL_MQTT_URL`` / the client's default);
* ``--cl-job-timeout S`` submit → terminal state limit (60 s); ``--cl-keep-jobs`` leaves the jobs on the server;
* ``--cl-summary PATH`` writes the final statistics as JSON (on the master, or the single process).

gevent: under Locust, paho's network thread, the client's tracker, callback and fetch threads are greenlets
(``threading`` is patched), and sockets, ``select``, locks and queues are gevent's; the client works unchanged
(``tests/unit/client/test_load_distributed.py`` runs a master and two workers and checks that every job's events
arrive). Caveats: one ``ComputeClient`` (one MQTT connection, one tracker) is shared by all users of a process
— one per user would make every process receive every event once per user — and it is created on a user's
first start, never at import time, because ``--processes`` forks after the locustfile is imported; CPU work in
a callback (none here: checks read a field or one small file) stalls every user of that process; a job that
is still running when a test is stopped hard is deleted by the process's ``test_stop`` sweep, so give
``--stop-timeout`` (``cl-client load`` does) to let the last jobs end and count.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import gevent
from locust import User, constant, events, task
from locust import runners as locust_runners
from locust.exception import StopUser
from locust.runners import STATE_INIT, STATE_STOPPED, MasterRunner, WorkerRunner
from locust.stats import StatsEntry

from cl_client._client import ComputeClient
from cl_client._load import DEFAULT_MIX, JOB, PROBES, Fire, InFlight, Picker, Row, Summary, parse_mix, run_job

if TYPE_CHECKING:
    from collections.abc import Callable

    from locust.env import Environment

    from pytest_cl._media import MediaCatalogue

__all__ = ["ComputeUser", "locustfile_path"]

#: the packaged locustfile (``locust -f $(python -m cl_client.locust)``).
LOCUSTFILE = Path(__file__).with_name("_locustfile.py")


def locustfile_path() -> Path:
    """Return the path of the packaged locustfile (one ``ComputeUser`` whose mix is ``--cl-mix``)."""
    return LOCUSTFILE


class _Process:
    """What the users of one process share: the client per (host, broker), the media, the undeleted jobs."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, str | None], ComputeClient] = {}
        self.in_flight = InFlight()
        self._catalogue: MediaCatalogue | None = None

    def client(self, host: str, mqtt: str | None) -> ComputeClient:
        key = (host, mqtt)
        if key not in self.clients:
            self.clients[key] = ComputeClient(host, mqtt_url=mqtt)
        return self.clients[key]

    def catalogue(self) -> MediaCatalogue:
        if self._catalogue is None:
            from pytest_cl._media import load_catalogue

            self._catalogue = load_catalogue()
        return self._catalogue

    def close(self) -> None:
        clients, self.clients = list(self.clients.values()), {}
        for client in clients:
            self.in_flight.sweep(client)
            client.close()


_PROCESS = _Process()
#: ids of the workers that sent a report to this master (Locust forgets a worker once it has stopped).
_WORKERS_SEEN: set[str] = set()
# Locust logs at INFO; httpx would log every request of every user there.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _option(environment: Environment, name: str) -> object:
    return cast(object, getattr(environment.parsed_options, name, None))


class ComputeUser(User):
    """A Locust user that runs plugin jobs on a compute deployment (``host`` = its API URL).

    Subclass it in a locustfile (it is abstract). Class attributes override the ``--cl-*`` options.

    Attributes:
        mix: plugin weights, ``"hash=5,exif=2"`` (default ``--cl-mix``, else ``hash=5,exif=2``).
        mqtt_url: the broker, ``"off"`` to poll (default ``--cl-mqtt``, else ``CL_MQTT_URL``).
        job_timeout: seconds from submit to terminal state before a job counts as failed.
        keep_jobs: leave the jobs on the server.
        client: the process's ``ComputeClient`` (set in ``on_start``).
    """

    abstract = True
    wait_time = constant(0)
    mix: ClassVar[str | None] = None
    mqtt_url: ClassVar[str | None] = None
    job_timeout: ClassVar[float | None] = None
    keep_jobs: ClassVar[bool | None] = None
    client: ComputeClient

    def on_start(self) -> None:
        """Attach the process's client and read the options."""
        env = cast("Environment", self.environment)
        host = self.host or ""
        if not host:
            raise StopUser("no host: give --host URL (the compute API)")
        mqtt = self.mqtt_url or cast(str | None, _option(env, "cl_mqtt")) or None
        self.client = _PROCESS.client(host, mqtt)
        weights = parse_mix(self.mix or cast(str | None, _option(env, "cl_mix")) or DEFAULT_MIX)
        self._picker = Picker(weights, seed=id(self))
        timeout = self.job_timeout or cast(float | None, _option(env, "cl_job_timeout"))
        self._timeout = float(timeout or 60.0)
        self._keep = bool(self.keep_jobs if self.keep_jobs is not None else _option(env, "cl_keep_jobs"))
        self._fire = cast("Fire", env.events.request.fire)

    @task
    def run_plugin_job(self) -> None:
        """Submit one job of the mix, wait for it, check and delete it (reported as described above)."""
        probe = PROBES[self._picker.next()]
        item = _PROCESS.catalogue()[probe.media]
        run_job(self.client, probe, item, self._fire, timeout=self._timeout, keep=self._keep,
                in_flight=_PROCESS.in_flight)  # fmt: skip


# -- Locust hooks -------------------------------------------------------------------------------------------
def _add_options(parser: object, **_: object) -> None:
    add = cast("Callable[..., object]", getattr(parser, "add_argument"))  # noqa: B009 - untyped configargparse
    add("--cl-mix", default=DEFAULT_MIX, help="Plugin mix, e.g. hash=5,exif=2", env_var="LOCUST_CL_MIX")
    add("--cl-mqtt", default=None, help="Broker URL or 'off' (default: CL_MQTT_URL)", env_var="LOCUST_CL_MQTT")
    add("--cl-job-timeout", type=float, default=60.0, help="Seconds submit -> terminal state",
        env_var="LOCUST_CL_JOB_TIMEOUT")  # fmt: skip
    add("--cl-keep-jobs", action="store_true", default=False, help="Leave the jobs on the server",
        env_var="LOCUST_CL_KEEP_JOBS")  # fmt: skip
    add("--cl-summary", default=None, help="Write the final statistics as JSON to this path",
        env_var="LOCUST_CL_SUMMARY")  # fmt: skip


def _drain_then_quit(runner: MasterRunner) -> None:
    """Make the master's ``quit`` stop the workers' users first, so that the last jobs are counted.

    Locust's headless ``--run-time`` end calls ``quit``, which on a master sends ``quit`` to the workers and
    waits 0.5 s for their final report: jobs that end during the workers' ``--stop-timeout`` were lost from the
    statistics (seen: 6 of 139 jobs submitted but never counted). ``stop`` first makes the master wait until no
    user runs (at most ``--stop-timeout`` + 60 s); each worker sends its last report before it says it stopped
    (``_on_test_stop``), because the master drops reports of a worker that has stopped.
    """
    quit_now = runner.quit

    def quit_after_drain() -> None:
        if runner.state not in (STATE_STOPPED, STATE_INIT):
            runner.stop()
            gevent.sleep(0.5)
        quit_now()

    runner.quit = quit_after_drain


class _MergedFinalReport(logging.Filter):
    """Drops Locust's "Discarded report from unrecognized worker" for a worker that reported before it stopped.

    A worker's last report (sent by ``_on_test_stop``) can reach the master after its ``client_stopped``: the
    master's runner then no longer knows the worker and logs that it "discarded" the report, but that listener only
    counts users; Locust's statistics listener (``setup_distributed_stats_event_listeners``) merges the report's
    requests, failures and errors all the same. The line said the opposite of what happens, so it is dropped
    for the workers this master has heard from (``_WORKERS_SEEN``) and kept for any other.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for the misleading line about a known worker's final report."""
        if not str(record.msg).startswith("Discarded report from unrecognized worker"):
            return True
        return not (record.args and isinstance(record.args, tuple) and str(record.args[0]) in _WORKERS_SEEN)


#: heartbeats a worker may miss before the master drops it (Locust: 3 of 1 s). A worker's first user imports the
#: client and the media catalogue, which holds its gevent loop for seconds on a loaded machine: with 3 the master
#: declared the only worker missing 4 s into a run and stopped the test (seen on a shared 2-core machine).
HEARTBEAT_LIVENESS = 10


def _on_init(environment: Environment, **_: object) -> None:
    if isinstance(environment.runner, MasterRunner):
        locust_runners.HEARTBEAT_LIVENESS = max(locust_runners.HEARTBEAT_LIVENESS, HEARTBEAT_LIVENESS)
        _drain_then_quit(environment.runner)
        logging.getLogger("locust.runners").addFilter(_MergedFinalReport())


def _on_test_stop(environment: Environment, **_: object) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return
    _PROCESS.close()
    if isinstance(runner, WorkerRunner):
        # The report of the jobs that ended since the last interval, sent before "client_stopped".
        cast("Callable[[], None]", getattr(runner, "_send_stats"))()  # noqa: B009 - private, on purpose


def _row(entry: StatsEntry) -> Row:
    return Row(
        method=str(entry.method), name=str(entry.name), requests=int(entry.num_requests),
        failures=int(entry.num_failures), rps=float(entry.total_rps),
        avg=float(entry.avg_response_time), p50=float(entry.get_response_time_percentile(0.5)),
        p95=float(entry.get_response_time_percentile(0.95)), p99=float(entry.get_response_time_percentile(0.99)),
        max=float(entry.max_response_time),
    )  # fmt: skip


def summarize(environment: Environment) -> Summary:
    """Return the run's statistics as a ``Summary`` (every ``JOB`` entry merged into ``jobs``)."""
    stats = environment.stats
    entries = sorted(stats.entries.values(), key=lambda e: (str(e.method), str(e.name)))
    total = StatsEntry(stats, "all", JOB)
    for entry in entries:
        if entry.method == JOB:
            total.extend(entry)
    errors = tuple(
        (str(e.method), str(e.name), str(cast(object, e.error)), int(e.occurrences)) for e in stats.errors.values()
    )
    start, last = float(stats.start_time or 0.0), float(stats.last_request_timestamp or 0.0)
    options = environment.parsed_options
    return Summary(
        jobs=_row(total),
        rows=tuple(_row(entry) for entry in entries),
        errors=errors,
        duration=max(0.0, last - start),
        users=int(cast(int, getattr(options, "num_users", 0) or 0)),
        workers=len(_WORKERS_SEEN),
    )


def _on_worker_report(client_id: str, **_: object) -> None:
    _WORKERS_SEEN.add(client_id)


def _on_quitting(environment: Environment, **_: object) -> None:
    path = cast(str | None, _option(environment, "cl_summary"))
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(summarize(environment).to_json(), encoding="utf-8")
    tmp.replace(target)


for _hook, _listener in (
    (events.init_command_line_parser, _add_options),
    (events.init, _on_init),
    (events.test_stop, _on_test_stop),
    (events.quitting, _on_quitting),
    (events.worker_report, _on_worker_report),
):
    cast("Callable[[Callable[..., None]], object]", _hook.add_listener)(_listener)


if __name__ == "__main__":  # pragma: no cover
    print(LOCUSTFILE)
