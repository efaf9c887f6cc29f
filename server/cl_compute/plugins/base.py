"""The one interface every plugin backend implements.

A plugin module is imported by the API server (to validate form fields and name output files) and by
workers (to run jobs). Its top level must therefore stay light: heavy imports (OpenCV, dlib, PyAV,
onnxruntime) happen inside ``load()`` or ``run()``, never at module import time.

Life of a job on the server side::

    API:    params = plugin.parse_params(form, upload_name)   # ParamError -> 422
            params |= {"input_path": "input/<name>", "output_path": ...}  (output_path from parse_params)
    worker: plugin.load()                                       # once per worker; BackendUnavailable
            task_output = plugin.run(ctx)                       # PluginError -> job "error"
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

#: How boolean form fields may be spelled (for the descriptions in ``Plugin.form_fields``).
BOOL_SPELLINGS = "true/false, 1/0, yes/no or on/off (any case)"


class ParamError(ValueError):
    """A form field failed validation; the API answers 422 with FastAPI's error shape.

    Args:
        field: the form field name (``loc`` becomes ``["body", field]``).
        message: human readable reason (``msg``).
        error_type: FastAPI-style error type string (``type``).
    """

    def __init__(self, field: str, message: str, error_type: str = "value_error") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.error_type = error_type


class NoInputError(ValueError):
    """A job without a ``file`` part names no other input either: the API answers 400 with this message.

    Only a plugin whose :meth:`Plugin.file_optional` is true raises it (from ``parse_params``).
    """


class PluginError(RuntimeError):
    """The job cannot be processed (corrupt file, wrong media type, ...). Ends the job ``error``.

    The message is stored as the job's ``error_message``: make it clear and actionable.
    """


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine (missing library, model or tool).

    A worker leaves the task type out of its capability message when ``load()`` raises this.
    """


class JobCancelled(Exception):
    """Raised inside ``run()`` by ``TaskContext.report_progress`` when the job was deleted meanwhile."""


@dataclass
class TaskContext:
    """What a backend gets to run one job.

    Attributes:
        job_id: the job's UUID.
        job_dir: absolute ``<data>/jobs/<job_id>`` directory; ``input/``, ``output/`` and ``faces/``
            exist already.
        input_path: absolute path of the uploaded file.
        params: the job's ``params`` as stored (typed values from ``parse_params`` plus ``input_path``
            and ``output_path``, both relative to ``job_dir``).
        progress: callback taking an int 0-100; the worker stores it, publishes it rate-limited, and
            raises ``JobCancelled`` when the job was deleted.
        time_limit: seconds this job may run; pass it (or what remains of it) to subprocesses.
    """

    job_id: str
    job_dir: Path
    input_path: Path
    params: Mapping[str, object]
    progress: Callable[[int], None] = field(default=lambda _p: None)
    time_limit: float = 600.0

    def output(self, relative: str) -> Path:
        """Absolute path for a path relative to the job directory (e.g. ``params['output_path']``)."""
        return self.job_dir / relative

    def report_progress(self, percent: int) -> None:
        """Report progress 0-100 (clamped). May raise ``JobCancelled``."""
        self.progress(max(0, min(100, int(percent))))


class Plugin(abc.ABC):
    """Base class of the nine backends. Subclasses set ``task_type`` and implement three methods.

    They also declare their form fields in ``form_fields`` (and ``required_form_fields``) for the API docs.
    """

    task_type: ClassVar[str]
    #: Free-form facts for the capability details (e.g. ``{"model": "stand-in descriptor, not CLIP"}``).
    details: ClassVar[Mapping[str, str]] = {}
    #: The form fields :meth:`parse_params` reads, for the API documentation (``POST /jobs/<task_type>`` in
    #: ``/openapi.json``): field name -> a JSON Schema object (OpenAPI 3.1) describing it. Values arrive as
    #: strings; ``type`` says how they are parsed (``boolean``, ``integer``, ``number``, ``string``). Use
    #: ``default`` (the value an absent or empty field means, as sent in a form), ``minimum``/``maximum``
    #: (inclusive), ``enum`` and ``description``; a string holding JSON adds ``contentMediaType`` and
    #: ``contentSchema``. Keep it equal to what ``parse_params`` accepts (tests/unit/server/test_openapi.py
    #: checks defaults, edges and enums). ``file`` and ``priority`` are the server's and are not listed here.
    #: Empty (the default) = the plugin does not declare its fields; any field is then documented as a string.
    form_fields: ClassVar[Mapping[str, Mapping[str, object]]] = {}
    #: The names in :attr:`form_fields` that must be sent (``parse_params`` raises ``ParamError`` without them).
    required_form_fields: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def parse_params(self, form: Mapping[str, str], upload_name: str) -> dict[str, object]:
        """Validate this plugin's form fields (strings as received) and return the typed params.

        Must include ``output_path`` (relative to the job directory, see PROTOCOL.md §3). ``priority`` and
        ``file`` are handled by the server, not here. Unknown extra fields are ignored.

        Raises:
            ParamError: a field is missing, malformed or out of range.
        """

    def file_optional(self) -> bool:
        """Whether a job may be created without a ``file`` part (default: no, a missing file is a 422).

        When true, ``parse_params`` of a request without a file gets ``upload_name`` ``""``, must name the
        job's input in the params it returns or raise :class:`NoInputError`, and the job's ``input_path`` is
        stored as ``""``.
        """
        return False

    def load(self) -> None:
        """Import heavy libraries / load models once per worker process.

        Raises:
            BackendUnavailable: this backend cannot run here.
        """

    @abc.abstractmethod
    def run(self, ctx: TaskContext) -> dict[str, object]:
        """Process one job: write output files under ``ctx.job_dir`` and return ``task_output``.

        Raises:
            PluginError: the input cannot be processed; the message becomes ``error_message``.
            JobCancelled: propagated from ``ctx.report_progress``.
        """
