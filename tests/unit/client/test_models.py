from __future__ import annotations

import pytest

from cl_client import JobEvent, JobResponse, ValidationError, WorkerCapability
from cl_client._models import is_terminal_status


@pytest.mark.parametrize(
    ("raw", "normal", "terminal"),
    [
        ("queued", "queued", False),
        ("processing", "processing", False),
        ("in_progress", "processing", False),
        ("completed", "completed", True),
        ("error", "error", True),
        ("failed", "error", True),
        ("FAILED", "error", True),
        ("paused", "paused", False),
    ],
)
def test_status_vocabularies(raw: str, normal: str, terminal: bool) -> None:
    job = JobResponse.model_validate({"job_id": "j", "status": raw, "progress": 12.6})
    assert job.status == normal
    assert job.is_terminal is terminal
    assert is_terminal_status(raw) is terminal
    assert job.progress == 13
    event = JobEvent.model_validate({"job_id": "j", "event_type": raw})
    assert event.event_type == normal and event.is_terminal is terminal


def test_job_response_fields_and_output_path() -> None:
    job = JobResponse.model_validate(
        {
            "job_id": "j1",
            "task_type": "hash",
            "status": "completed",
            "progress": None,
            "params": {"output_path": "output/hash.json", "n": [1, {"a": None}]},
            "task_output": {"media_type": "image"},
            "created_at": 5,
            "unknown_field": "ignored",
        }
    )
    assert job.output_path == "output/hash.json"
    assert job.progress == 0
    assert job.is_completed and not job.is_failed
    assert JobResponse.model_validate({"job_id": "j", "status": "x", "params": {"output_path": 3}}).output_path is None


@pytest.mark.parametrize("key", ["id", "worker_id"])
def test_worker_capability_accepts_both_keys(key: str) -> None:
    cap = WorkerCapability.model_validate({key: "w1", "capabilities": ["hash"], "idle_count": 1})
    assert cap.worker_id == "w1"
    assert cap.is_idle


def test_event_as_job() -> None:
    job = JobEvent.model_validate({"job_id": "j", "event_type": "processing", "progress": 41.6, "timestamp": 7}).as_job(
        "exif"
    )
    assert (job.status, job.progress, job.task_type, job.created_at) == ("processing", 42, "exif", 7)


def test_validation_error_field_list() -> None:
    err = ValidationError(
        "x",
        method="POST",
        url="u",
        status_code=422,
        detail=[{"loc": ["body", "priority"], "msg": "too big"}, {"loc": "query", "msg": "bad"}, "junk"],
    )
    assert err.errors == [("body.priority", "too big"), ("query", "bad")]
    plain = ValidationError("x", method="GET", url="u", status_code=400, detail="Invalid path")
    assert plain.errors == [("", "Invalid path")]
