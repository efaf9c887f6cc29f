"""Behaviour profiles of the reference deployment: the fixed one (default) and upstream's, quirk by quirk.

``cl_compute`` normally serves the protocol with every **[fix]** of PROTOCOL.md. The upstream profiles turn
those fixes back into upstream's wire behaviour, so that the conformance suites and the client can be proven
against upstream-like deployments in CI without upstream's code:

* ``upstream-2026-01``: the January 2026 stack of PROTOCOL.md §2–§8 (compute 5ff460a, ml_tools 1ade3d3);
* ``upstream-2026-02``: the February 2026 compute service of PROTOCOL.md §9 (cl_server_compute_service 4edc727
  with ml_tools 5cb771c, every plugin working). It lets any caller read and write server paths through
  hls_streaming's ``input_absolute_path`` / ``output_absolute_path`` (upstream's hole, reproduced on purpose);
* ``upstream-2026-02-20``: the same service on ml_tools 9795122 or later (02-20, still so at c48a587), where
  every ``hash`` and every ``media_thumbnail`` job ends ``error``.

Each quirk is one field of :class:`Quirks`, read in exactly one place of the server, worker or plugin code
(``quirks().<name>``). A profile is chosen with ``cl-compute up --profile NAME`` (also ``serve`` and
``worker``), ``Deployment(profile=NAME)`` or the pytest plugin's ``--cl-embedded-profile NAME``; all of them set
the environment variable ``CL_COMPUTE_PROFILE`` of the processes they start, so the API server, the workers and
the workers' plugin processes agree.

The ``fault-<class>`` profiles (one per ``fault_*`` switch of :class:`Quirks`, generated) plant one defect each in
the fixed deployment; ``.ci/faults`` certifies each against the checks of :data:`FAULT_EXPECTATIONS` and fails when
no check fails or the first failure line lacks the expected words (the suites' sensitivity as a CI property).

Not reproduced by the upstream profiles, on purpose: a job whose worker died staying ``processing`` forever and a
deleted running job carrying on (both would only make runs hang or leave files behind; PROTOCOL.md §4 records
them, and the upstream lists carry them as optional entries). The faults ``fault-worker-death-leaves-processing``
and ``fault-delete-does-not-cancel`` plant them, one at a time, to prove the checks that catch them.
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
#: Upstream's February 2026 compute service with ml_tools 5cb771c, as PROTOCOL.md §9 records it.
UPSTREAM_2026_02 = "upstream-2026-02"
#: The February 2026 service on ml_tools 9795122 or later (hash and media_thumbnail fail every job).
UPSTREAM_2026_02_20 = "upstream-2026-02-20"


@dataclass(frozen=True)
class Quirks:
    """One switch per upstream quirk; all False is the fixed reference deployment.

    The ``fault_*`` fields are the *faults* family: defects no release is known to have, one per defect class the
    conformance suites claim to catch (issue 19). Each is off in every upstream profile and on in exactly one
    generated profile ``fault-<class>`` (see :data:`FAULT_PROFILES`); :data:`FAULT_EXPECTATIONS` says which checks
    must catch it and with which words (``.ci/faults`` proves it).

    Attributes:
        fault_hash_video_all_frames: ``sha512`` of a video hashes every video packet, not only the key frames.
        fault_hash_image_file_bytes: ``sha512`` of an image hashes the file's bytes, not its decoded pixels.
        fault_face_landmarks_pixels: face landmarks are in pixels while the bbox stays normalised.
        fault_face_eyes_swapped: ``left_eye`` and ``right_eye`` are swapped (the image's left called the left eye).
        fault_face_embedding_unnormalized: face_embedding ignores ``normalize`` (the raw vector is stored).
        fault_clip_float64: clip_embedding stores its vector as float64.
        fault_dino_clip_length: dino_embedding stores 512 values (CLIP's length, zero-padded), not 384.
        fault_exif_gps_sign_lost: the typed GPS latitude and longitude lose their sign (the Ref tags ignored).
        fault_image_conversion_png_always: image_conversion writes PNG bytes whatever ``format`` asks for.
        fault_image_conversion_quality_ignored: image_conversion ignores ``quality`` (always 85).
        fault_thumbnail_upscales: media_thumbnail enlarges images smaller than the box.
        fault_thumbnail_one_frame: a video thumbnail repeats its first key frame in every grid cell.
        fault_hls_no_original: hls_streaming ignores ``include_original`` (no ``adaptive-orig`` stream), while
            ``task_output`` still says true.
        fault_hls_variant_missing: hls_streaming drops the last requested variant (``variants_generated`` still
            counts it).
        fault_post_status_201: ``POST /jobs/{task_type}`` answers 201 instead of 200.
        fault_job_missing_priority: ``GET /jobs/{id}`` omits ``priority`` from the JobResponse.
        fault_updated_at_frozen: ``updated_at`` stays at ``started_at`` (frozen once the job starts).
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
        admin_config_routes_only: (January) guest mode is served only by ``GET /admin/config`` and
            ``PUT /admin/config/guest-mode``; every ``/admin/pref…`` path answers 404.
        admin_pref_routes_only: (February) guest mode is served only by ``GET /admin/pref`` and
            ``PUT /admin/pref/guest-mode``; the ``/admin/config…`` paths answer 404 and ``GET /admin/pref/guest-mode``
            405.
        capability_worker_id_only: (February) capability payloads carry ``worker_id`` only (no ``id``, no extra
            fields).
        fast_idle_poll: (February) the ``idle_poll`` interval is ``IDLE_POLL_SECONDS_2026_02`` (1 s), not 5 s.
        hls_server_paths: (February) hls_streaming takes no ``file`` but the form fields ``input_absolute_path``
            and ``output_absolute_path``, which name paths on the server that the job reads and writes (without
            both a file and an input path: 400). Upstream's security hole; without this switch those fields are
            refused (422).
        hls_manifest_progress: (February) hls_streaming reports progress 1 once the master playlist is written,
            then nothing until it ends (no ffmpeg-based progress).
        ml_tools_broken_plugins: (ml_tools >= 9795122) every job of the task types in
            :data:`ML_TOOLS_BROKEN_PLUGINS` ends ``error`` with upstream's message.

    Faults (``fault_*``, on in no upstream profile, only in the generated ``fault-<name>`` profiles): defects
    planted to prove that the conformance suites catch their class (issue 19).

        fault_retained_job_events: job events on ``inference/events`` are published with the retain flag
            (``mqtt.MQTTConnection.publish_event``).
        fault_events_to_late_subscribers: on each new job the API publishes again the terminal event of every
            job that ended in the last minute (a "catch-up" replay, ``app.py`` job creation).
        fault_capability_not_cleared: a worker that stops cleanly leaves its retained capability message
            (``Worker._shutdown``).
        fault_worker_death_leaves_processing: the API ends no job of a worker that disappeared or whose lease
            expired (``ServerState.ends_dead_workers_jobs``): it stays ``processing``.
        fault_delete_does_not_cancel: a worker ignores the deletion of the job it runs and carries on to the
            end (``worker.job_was_cancelled``).
    """

    # faults (issue 19 items 4-5)
    fault_hash_video_all_frames: bool = False
    fault_hash_image_file_bytes: bool = False
    fault_face_landmarks_pixels: bool = False
    fault_face_eyes_swapped: bool = False
    fault_face_embedding_unnormalized: bool = False
    fault_clip_float64: bool = False
    fault_dino_clip_length: bool = False
    fault_exif_gps_sign_lost: bool = False
    fault_image_conversion_png_always: bool = False
    fault_image_conversion_quality_ignored: bool = False
    fault_thumbnail_upscales: bool = False
    fault_thumbnail_one_frame: bool = False
    fault_hls_no_original: bool = False
    fault_hls_variant_missing: bool = False
    fault_post_status_201: bool = False
    fault_job_missing_priority: bool = False
    fault_updated_at_frozen: bool = False
    # upstream's quirks
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
    admin_config_routes_only: bool = False
    admin_pref_routes_only: bool = False
    capability_worker_id_only: bool = False
    fast_idle_poll: bool = False
    hls_server_paths: bool = False
    hls_manifest_progress: bool = False
    ml_tools_broken_plugins: bool = False
    # faults (issue 19 items 1-3)
    fault_retained_job_events: bool = False
    fault_events_to_late_subscribers: bool = False
    fault_capability_not_cleared: bool = False
    fault_worker_death_leaves_processing: bool = False
    fault_delete_does_not_cancel: bool = False


#: Upstream's idle poll interval (``WORKER_POLL_INTERVAL``) in January 2026, seconds.
IDLE_POLL_SECONDS = 5.0
#: The February 2026 worker's poll interval (``--worker-poll-interval`` default), seconds.
IDLE_POLL_SECONDS_2026_02 = 1.0
#: What every job of these task types ends with on ml_tools >= 9795122 (``error_message``).
ML_TOOLS_BROKEN_PLUGINS: dict[str, str] = {
    "hash": "name 'logger' is not defined",
    "media_thumbnail": "Unsupported media type",
}

#: The January 2026 stack: every quirk of PROTOCOL.md §2–§8.
_JANUARY = Quirks(
    upstream_identity=True,
    lazy_capabilities=True,
    updated_at_is_created_at=True,
    priority_ignored=True,
    queued_after_insert=True,
    bad_variants_500=True,
    octet_stream_downloads=True,
    upload_names_as_sent=True,
    guest_mode_default_on=True,
    guest_mode_opens_admin=True,
    exp_optional=True,
    silent_failures=True,
    no_progress_events=True,
    capability_id_only=True,
    idle_poll=True,
    late_will=True,
    exif_typed_null=True,
    exif_hash_accept_empty=True,
    thumbnail_mode_fails=True,
    thumbnail_video_fails=True,
    video_hash_csv_defect=True,
    hls_master_absolute=True,
    hls_accepts_stills=True,
    admin_config_routes_only=True,
)
#: The February 2026 service (PROTOCOL.md §9): January's quirks except those it fixed, plus its own.
_FEBRUARY = replace(
    _JANUARY,
    lazy_capabilities=False,  # the server subscribes at start-up
    silent_failures=False,  # failures are published
    no_progress_events=False,  # progress is published (capped at 99)
    capability_id_only=False,
    capability_worker_id_only=True,
    admin_config_routes_only=False,
    admin_pref_routes_only=True,
    fast_idle_poll=True,
    hls_server_paths=True,
    hls_manifest_progress=True,
)

#: Prefix of the fault switches (fields of :class:`Quirks`) and of their profiles.
FAULT_FIELD_PREFIX = "fault_"
FAULT_PROFILE_PREFIX = "fault-"


def fault_fields() -> tuple[str, ...]:
    """The names of every ``fault_*`` field of :class:`Quirks`, in declaration order."""
    return tuple(f.name for f in fields(Quirks) if f.name.startswith(FAULT_FIELD_PREFIX))


def fault_profile_name(field_name: str) -> str:
    """The profile of one fault switch: ``fault_hls_no_original`` -> ``fault-hls-no-original``.

    Args:
        field_name: a ``fault_*`` field of :class:`Quirks`.

    Raises:
        ValueError: it is not one.
    """
    if field_name not in fault_fields():
        raise ValueError(f"{field_name!r} is not a fault switch of Quirks (known: {', '.join(fault_fields())})")
    return FAULT_PROFILE_PREFIX + field_name.removeprefix(FAULT_FIELD_PREFIX).replace("_", "-")


#: ``fault-<class>`` -> the fixed profile with that one fault switch on; generated from the ``fault_*`` fields.
FAULT_PROFILES: dict[str, Quirks] = {
    fault_profile_name(name): replace(Quirks(), **{name: True}) for name in fault_fields()
}

PROFILES: dict[str, Quirks] = {
    FIXED: Quirks(),
    UPSTREAM_2026_01: _JANUARY,
    UPSTREAM_2026_02: _FEBRUARY,
    UPSTREAM_2026_02_20: replace(_FEBRUARY, ml_tools_broken_plugins=True),
    **FAULT_PROFILES,
}


@dataclass(frozen=True)
class FaultExpectation:
    """What must catch one fault: the conformance rows to run, the checks to select, the words of the failure.

    Attributes:
        rows: matrix rows (``cl-client certify --plugins``): plugin names, ``protocol``, ``workflows``.
        select: a pytest ``-k`` expression narrowing the run to the checks that concern the fault ("" = all).
        words: each must appear (case-insensitive) in the first failure line.
    """

    rows: tuple[str, ...]
    select: str
    words: tuple[str, ...]


#: fault switch -> what catches it. ``.ci/faults`` runs each; a unit test asserts every ``fault_*`` field has one.
FAULT_EXPECTATIONS: dict[str, FaultExpectation] = {
    "fault_hash_video_all_frames": FaultExpectation(("hash",), "video_hash", ("every video packet",)),
    "fault_hash_image_file_bytes": FaultExpectation(("hash",), "default_sha512", ("of the file's bytes",)),
    "fault_face_landmarks_pixels": FaultExpectation(("face_detection",), "landmarks", ("landmarks", "in pixels")),
    "fault_face_eyes_swapped": FaultExpectation(("face_detection",), "landmarks", ("right_eye", "left_eye", "swapped")),
    "fault_face_embedding_unnormalized": FaultExpectation(("face_embedding",), "crop_job", ("not normalised",)),
    "fault_clip_float64": FaultExpectation(("clip_embedding",), "default_job", ("float64",)),
    "fault_dino_clip_length": FaultExpectation(("dino_embedding",), "default_job", ("512", "clip_embedding")),
    "fault_exif_gps_sign_lost": FaultExpectation(("exif",), "typed_fields_with_default", ("sign lost",)),
    "fault_image_conversion_png_always": FaultExpectation(
        ("image_conversion",), "through_events", ("the bytes are a png",)
    ),
    "fault_image_conversion_quality_ignored": FaultExpectation(
        ("image_conversion",), "higher_quality", ("quality is ignored",)
    ),
    "fault_thumbnail_upscales": FaultExpectation(("media_thumbnail",), "never_upscales", ("upscaled",)),
    "fault_thumbnail_one_frame": FaultExpectation(("media_thumbnail",), "video_gives_a_grid", ("one frame repeated",)),
    "fault_hls_no_original": FaultExpectation(
        ("hls_streaming",), "include_original_adds", ("adaptive-orig", "missing")
    ),
    "fault_hls_variant_missing": FaultExpectation(("hls_streaming",), "requested_variants", ("variant", "missing")),
    "fault_post_status_201": FaultExpectation(("protocol",), "created_response", ("expected HTTP 200, got 201",)),
    "fault_job_missing_priority": FaultExpectation(("protocol",), "created_response", ("no 'priority' field",)),
    "fault_updated_at_frozen": FaultExpectation(("protocol",), "updated_at_follows", ("updated_at",)),
    "fault_retained_job_events": FaultExpectation(
        ("protocol",), "test_delivery", ("the deployment publishes job events retained",)
    ),
    "fault_events_to_late_subscribers": FaultExpectation(
        ("protocol",), "test_delivery", ("old events reach new subscribers",)
    ),
    "fault_capability_not_cleared": FaultExpectation(
        ("protocol",), "test_delivery", ("capability message is not cleared",)
    ),
    "fault_worker_death_leaves_processing": FaultExpectation(
        ("protocol",), "test_worker_death and SIGKILL", ("a dead worker's job stays processing",)
    ),
    "fault_delete_does_not_cancel": FaultExpectation(
        ("protocol",), "test_cancellation", ("a deleted running job went on",)
    ),
}


#: One line ``cl-compute up`` prints for a profile that opens a security hole (PROTOCOL.md §9).
SERVER_PATHS_WARNING = (
    "WARNING: profile {profile} reproduces upstream's hls_streaming server paths: any caller can make the "
    "workers read and write files anywhere this user may (input_absolute_path / output_absolute_path). "
    "Keep it on localhost (the default bind) and use it only to test clients and suites."
)


def profile_warning(name: str) -> str | None:
    """The warning to show when starting a deployment with profile ``name``, or None.

    Args:
        name: a profile name.

    Raises:
        UnknownProfileError: it is not one.
    """
    if _quirks_of(name).hls_server_paths:
        return SERVER_PATHS_WARNING.format(profile=name)
    return None


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
