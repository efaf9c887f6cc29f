"""Behaviour profiles of the reference deployment: the fixed one (default) and upstream's, quirk by quirk.

``cl_compute`` normally serves the protocol with every **[fix]** of PROTOCOL.md. The profile
``upstream-2026-01`` turns those fixes back into the wire behaviour that PROTOCOL.md §2–§8 record for upstream's
January 2026 stack (compute 5ff460a, ml_tools 1ade3d3), so that the conformance suites and the client can be
proven against an upstream-like deployment in CI without upstream's code.

Each quirk is one field of :class:`Quirks`, read in exactly one place of the server, worker or plugin code
(``quirks().<name>``). A profile is chosen with ``cl-compute up --profile NAME`` (also ``serve`` and
``worker``), ``Deployment(profile=NAME)`` or the pytest plugin's ``--cl-embedded-profile NAME``; all of them set
the environment variable ``CL_COMPUTE_PROFILE`` of the processes they start, so the API server, the workers and
the workers' plugin processes agree.

Not reproduced, on purpose: a job whose worker died staying ``processing`` forever and a deleted running job
carrying on (both would only make runs hang or leave files behind; PROTOCOL.md §4 records them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from functools import cache

#: Environment variable that carries the profile name to every process of a deployment.
PROFILE_ENV = "CL_COMPUTE_PROFILE"
#: The default: every [fix] of PROTOCOL.md.
FIXED = "fixed"
#: Upstream's January 2026 stack as PROTOCOL.md §8 records it.
UPSTREAM_2026_01 = "upstream-2026-01"


@dataclass(frozen=True)
class Quirks:
    """One switch per upstream quirk; all False is the fixed reference deployment.

    Attributes:
        upstream_identity: ``GET /`` answers upstream's ``{"service": "Task Server", "version": "v1"}`` (so
            clients and suites do not take the deployment for the reference one).
        lazy_capabilities: the first ``GET /capabilities`` after start-up is empty (upstream subscribes lazily).
        updated_at_is_created_at: ``updated_at`` echoes ``created_at``.
        priority_ignored: jobs run FIFO whatever their priority.
        queued_after_insert: the API publishes ``queued`` after the job row exists, so a worker may publish
            ``processing`` first (upstream's API and worker publish on separate connections).
        bad_variants_500: malformed hls ``variants`` give HTTP 500 and the keep-alive connection is closed
            without ``Connection: close``.
        octet_stream_downloads: every download is ``application/octet-stream``.
        upload_names_as_sent: ``input/<name>`` keeps the client's file name as sent (only made safe enough
            not to leave the job's input folder).
        guest_mode_default_on: with auth configured, guest mode starts on (upstream's default since Jan 2026).
        guest_mode_opens_admin: guest mode opens ``/admin/*`` too, and tokens are not even decoded.
        exp_optional: tokens without ``exp`` are accepted.
        silent_failures: no MQTT event for a job that ends ``error``.
        no_progress_events: no MQTT event for progress-only updates.
        capability_id_only: capability payloads carry ``id`` only (no ``worker_id``, no extra fields).
        idle_poll: an idle worker polls the database every ``IDLE_POLL_SECONDS`` and is not woken by new jobs;
            its retained ``idle_count`` flips 0/1 on every poll cycle.
        late_will: the worker's last will is registered only after CONNECT (so it never applies: a killed
            worker's retained "idle" message stays).
        exif_typed_null: with the default empty ``tags`` every typed exif field is null (raw ``-G -n`` keys).
        exif_hash_accept_empty: exif and hash complete on zero-byte and broken files.
        thumbnail_mode_fails: thumbnails of paletted (P) and RGBA images end ``error`` "cannot write mode P as JPEG".
        thumbnail_video_fails: thumbnails of videos end ``error`` "Input file not found: input/<name>".
        video_hash_csv_defect: ``sha512`` of a video ends ``error`` "CSV data is invalid." (ffprobe 5.1's 4th column).
        hls_master_absolute: ``master_playlist`` is an absolute server path.
        hls_accepts_stills: hls_streaming takes a still image as a one-frame video instead of refusing it.
    """

    upstream_identity: bool = False
    lazy_capabilities: bool = False
    updated_at_is_created_at: bool = False
    priority_ignored: bool = False
    queued_after_insert: bool = False
    bad_variants_500: bool = False
    octet_stream_downloads: bool = False
    upload_names_as_sent: bool = False
    guest_mode_default_on: bool = False
    guest_mode_opens_admin: bool = False
    exp_optional: bool = False
    silent_failures: bool = False
    no_progress_events: bool = False
    capability_id_only: bool = False
    idle_poll: bool = False
    late_will: bool = False
    exif_typed_null: bool = False
    exif_hash_accept_empty: bool = False
    thumbnail_mode_fails: bool = False
    thumbnail_video_fails: bool = False
    video_hash_csv_defect: bool = False
    hls_master_absolute: bool = False
    hls_accepts_stills: bool = False


#: Upstream's idle poll interval (``WORKER_POLL_INTERVAL``), seconds.
IDLE_POLL_SECONDS = 5.0

PROFILES: dict[str, Quirks] = {
    FIXED: Quirks(),
    UPSTREAM_2026_01: replace(Quirks(), **{f.name: True for f in fields(Quirks)}),
}


class UnknownProfileError(ValueError):
    """A profile name that is not in :data:`PROFILES` (the message lists the known ones)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
        self.name = name


def check_profile(name: str) -> str:
    """Return ``name`` if it is a known profile.

    Args:
        name: a profile name.

    Raises:
        UnknownProfileError: it is not one.
    """
    if name not in PROFILES:
        raise UnknownProfileError(name)
    return name


def profile_name() -> str:
    """The profile of this process: ``CL_COMPUTE_PROFILE``, or ``fixed`` when unset or empty.

    Raises:
        UnknownProfileError: the variable names an unknown profile.
    """
    return check_profile(os.environ.get(PROFILE_ENV) or FIXED)


@cache
def _quirks_of(name: str) -> Quirks:
    return PROFILES[check_profile(name)]


def quirks() -> Quirks:
    """The quirks of this process's profile (see :func:`profile_name`).

    Raises:
        UnknownProfileError: ``CL_COMPUTE_PROFILE`` names an unknown profile.
    """
    return _quirks_of(os.environ.get(PROFILE_ENV) or FIXED)


def use_profile(name: str) -> None:
    """Make ``name`` the profile of this process and of the processes it starts (sets ``CL_COMPUTE_PROFILE``).

    Args:
        name: a profile name.

    Raises:
        UnknownProfileError: it is not one.
    """
    os.environ[PROFILE_ENV] = check_profile(name)
