"""Wire models (pydantic v2). Field names follow PROTOCOL.md; no ``Any`` anywhere."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, field_validator

JsonObject = dict[str, JsonValue]


class JobStatus(enum.StrEnum):
    """The normalised job statuses. ``JobResponse.status`` may also hold an unknown string."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"


#: Upstream spellings mapped to the normalised ones.
_STATUS_ALIASES = {"in_progress": "processing", "failed": "error", "running": "processing"}
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED.value, JobStatus.ERROR.value})


def normalize_status(value: str) -> str:
    """Map upstream spellings (``in_progress``, ``failed``) to ``processing``/``error``; keep unknown values."""
    lowered = str.lower(str.strip(value))
    return _STATUS_ALIASES.get(lowered, lowered)


class StatusText(str):
    """A normalised job status that also equals upstream's spelling of it.

    ``JobResponse.status`` holds one: its text is the normalised word (``error``, ``processing``), and it
    compares equal to both spellings, so upstream code such as ``job.status == "failed"`` or
    ``job.status in ["completed", "failed"]`` stays true. Hashing is that of the normalised text, so set and
    dict look-ups must use the normalised words (``"error"``, ``"processing"``).
    """

    __slots__ = ()

    def __new__(cls, value: str) -> StatusText:
        """Normalise ``value`` (``failed`` -> ``error``, ``in_progress``/``running`` -> ``processing``)."""
        return super().__new__(cls, normalize_status(value))

    def __eq__(self, other: object) -> bool:
        """Equal to the normalised word and to every upstream spelling of it (case-insensitive)."""
        if isinstance(other, str):
            return str.__eq__(str(self), normalize_status(other))
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        """The negation of ``__eq__``."""
        if isinstance(other, str):
            return not self.__eq__(other)
        return NotImplemented

    def __hash__(self) -> int:
        """The hash of the normalised text."""
        return str.__hash__(self)

    def __repr__(self) -> str:
        return repr(str(self))

    @property
    def upstream(self) -> str:
        """The word upstream's SDK documented for this status (``failed``, ``in_progress``; others unchanged)."""
        return _UPSTREAM_WORDS.get(str(self), str(self))


_UPSTREAM_WORDS = {"error": "failed", "processing": "in_progress"}


def is_terminal_status(value: str) -> bool:
    """True for ``completed`` and ``error`` (after normalisation); unknown values are not terminal."""
    return normalize_status(value) in TERMINAL_STATUSES


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class JobResponse(_Model):
    """A job record as ``GET /jobs/{id}`` returns it (status normalised).

    Attributes:
        job_id: the job's UUID.
        task_type: the plugin name.
        status: ``queued``, ``processing``, ``completed``, ``error`` or an unknown server value, as a
            ``StatusText`` (equal to upstream's ``in_progress``/``failed`` too).
        progress: 0-100.
        params: the form fields echoed plus ``input_path`` and ``output_path``.
        task_output: the plugin's summary output (never the vectors or files themselves).
        error_message: why the job failed.
        priority: 0-10.
        created_at: milliseconds since the epoch; ``updated_at``, ``started_at``, ``completed_at`` likewise.
    """

    job_id: str
    task_type: str = "unknown"
    status: str
    progress: int = 0
    params: JsonObject = Field(default_factory=dict)
    task_output: JsonObject | None = None
    error_message: str | None = None
    priority: int = 5
    created_at: int = 0
    updated_at: int | None = None
    started_at: int | None = None
    completed_at: int | None = None

    @field_validator("status", mode="after")
    @classmethod
    def _normalise_status(cls, value: str) -> str:
        return StatusText(value)

    @field_validator("progress", mode="before")
    @classmethod
    def _int_progress(cls, value: object) -> object:
        if value is None:
            return 0
        if isinstance(value, float):
            return round(value)
        return value

    @property
    def is_terminal(self) -> bool:
        """True when the job completed or failed."""
        return self.status in TERMINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        """True when the job completed successfully."""
        return self.status == JobStatus.COMPLETED

    @property
    def is_failed(self) -> bool:
        """True when the job ended in error."""
        return self.status == JobStatus.ERROR

    @property
    def output_path(self) -> str | None:
        """``params.output_path`` (the plugin's main output file, relative to the job directory)."""
        value = self.params.get("output_path")
        return value if isinstance(value, str) else None


class JobCreatedResponse(_Model):
    """The body of a successful ``POST /jobs/{task_type}``."""

    job_id: str
    status: str = "queued"
    task_type: str = "unknown"

    @field_validator("status", mode="before")
    @classmethod
    def _normalise_status(cls, value: object) -> object:
        return normalize_status(value) if isinstance(value, str) else value


class WorkerCapabilitiesResponse(_Model):
    """``GET /capabilities``: the number of workers and, per task type, the idle workers offering it."""

    num_workers: int = 0
    capabilities: dict[str, int] = Field(default_factory=dict)


class WorkerCapability(_Model):
    """A worker's retained capability message on ``inference/workers/<id>``.

    Accepts ``worker_id`` (newer) or ``id`` (upstream compute); the client fills it from the topic otherwise.
    """

    worker_id: Annotated[str, Field(validation_alias=AliasChoices("worker_id", "id"))] = ""
    capabilities: list[str] = Field(default_factory=list)
    idle_count: int = 0
    timestamp: int | float | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def is_idle(self) -> bool:
        """True when the worker reports a free job slot."""
        return self.idle_count > 0


class JobEvent(_Model):
    """One message on ``inference/events``: ``{"job_id","event_type","timestamp","progress"}``."""

    job_id: str
    event_type: str
    timestamp: int | float | None = None
    progress: int | float | None = None

    @field_validator("event_type", mode="before")
    @classmethod
    def _normalise_status(cls, value: object) -> object:
        return normalize_status(value) if isinstance(value, str) else value

    @property
    def is_terminal(self) -> bool:
        """True for ``completed`` and ``error`` events."""
        return self.event_type in TERMINAL_STATUSES

    def as_job(self, task_type: str = "unknown") -> JobResponse:
        """A synthetic JobResponse built from the event (what upstream's SDK hands to callbacks)."""
        ts = int(self.timestamp) if self.timestamp is not None else 0
        return JobResponse(
            job_id=self.job_id,
            task_type=task_type,
            status=self.event_type,
            progress=round(self.progress) if self.progress is not None else 0,
            created_at=ts,
            updated_at=ts,
        )


class HealthResponse(_Model):
    """``GET /``: service health."""

    status: str
    service: str | None = None
    version: str | None = None
    guest_mode: str | None = Field(default=None, validation_alias=AliasChoices("guestMode", "guest_mode"))


class StorageInfo(_Model):
    """``GET /admin/jobs/storage/size``."""

    total_size: int
    job_count: int


class CleanupResult(_Model):
    """``DELETE /admin/jobs/cleanup``."""

    deleted_count: int
    freed_space: int


class GuestModeRoutes(enum.StrEnum):
    """The two sets of guest-mode routes upstream has served (PROTOCOL.md §2, §9).

    ``PREF``: February 2026 servers, ``GET /admin/pref`` and ``PUT /admin/pref/guest-mode``.
    ``CONFIG``: January 2026 servers, ``GET /admin/config`` and ``PUT /admin/config/guest-mode``.
    """

    PREF = "pref"
    CONFIG = "config"

    @property
    def read_path(self) -> str:
        """The path that reads the setting (``GET``)."""
        return "/admin/pref" if self is GuestModeRoutes.PREF else "/admin/config"

    @property
    def write_path(self) -> str:
        """The path that changes the setting (``PUT``, form field ``guest_mode``)."""
        return f"{self.read_path}/guest-mode"

    @property
    def release(self) -> str:
        """The upstream release that serves this set (``February 2026`` / ``January 2026``)."""
        return "February 2026" if self is GuestModeRoutes.PREF else "January 2026"

    def describe(self) -> str:
        """One phrase for messages: ``/admin/pref (February 2026 routes)``."""
        return f"{self.read_path} ({self.release} routes)"


class GuestModeConfig(_Model):
    """The guest-mode setting as the server reported it, and the route set that answered.

    Attributes:
        guest_mode: whether guest mode is on (job routes open to anyone).
        updated_at: when it was last changed, ms since the epoch (read routes only; None if never set).
        updated_by: who changed it last (a user id; None in guest mode or if never set).
        message: the server's message after a change (write routes only).
        routes: which route set answered (set by the client, not sent by the server).
    """

    guest_mode: bool
    updated_at: int | None = None
    updated_by: str | None = None
    message: str | None = None
    routes: GuestModeRoutes | None = None
