"""MOCKS of upstream's compute routes that the reference deployment cannot produce yet: the guest-mode admin routes
of the January 2026 and February 2026 releases, exactly as PROTOCOL.md §2 and §9 describe them, and February's
``POST /jobs/hls_streaming`` without a file.

They are real HTTP servers (``ScriptedServer``'s uvicorn thread) with a FastAPI app of their own; only the route
behaviour is scripted. Auth is reduced to two fixed tokens: ``Bearer admin`` (an admin) and ``Bearer user`` (not
an admin); with ``auth=True`` a request without a token gets 401 and the user token 403, decided after route
matching, as in FastAPI (so a missing route is 404 or 405 whatever the token).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.unit.client.scripted_server import ScriptedServer

JANUARY = "2026-01"
FEBRUARY = "2026-02"
NEITHER = "none"


class UpstreamMock(ScriptedServer):
    """MOCK of upstream's guest-mode routes (and February's fileless hls job creation) for one release.

    Attributes:
        release: ``JANUARY``, ``FEBRUARY`` or ``NEITHER``; may be changed while running (a server replaced
            behind the same URL).
        auth: admin routes need ``Bearer admin`` (401 without a token, 403 with ``Bearer user``).
        log: every request as ``(method, path, status)``.
        forms: the form fields of every ``POST /jobs/...``, with ``"<file>"`` set to the upload's name if any.
    """

    def __init__(self, release: str, *, auth: bool = False) -> None:
        self.release = release
        self.auth = auth
        self.guest_mode = True
        self.updated_at: int | None = None
        self.updated_by: str | None = None
        self.log: list[tuple[str, str, int]] = []
        self.forms: list[dict[str, str]] = []
        super().__init__(None)

    def calls(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request so far."""
        return [(m, p) for m, p, _ in self.log]

    def _build_app(self) -> FastAPI:
        app = FastAPI()
        mock = self

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            mock.log.append((request.method, request.url.path, response.status_code))
            return response

        def admin(request: Request) -> str | None:
            if not mock.auth:
                return None
            header = request.headers.get("authorization", "")
            if not header:
                raise _Refused(401, "Authentication required")
            if header != "Bearer admin":
                raise _Refused(403, "Insufficient permissions. Admin access required.")
            return "admin-user"

        @app.exception_handler(_Refused)
        async def refused(_request: Request, exc: _Refused) -> Response:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)

        not_found = JSONResponse({"detail": "Not Found"}, status_code=404)
        not_allowed = JSONResponse({"detail": "Method Not Allowed"}, status_code=405)

        def read(user: str | None) -> dict[str, Any]:
            return {"guest_mode": mock.guest_mode, "updated_at": mock.updated_at, "updated_by": mock.updated_by}

        async def write(request: Request, user: str | None) -> Response:
            form = await request.form()
            value = str(form.get("guest_mode", "")).lower()
            if value not in ("true", "false"):
                return JSONResponse(
                    {"detail": [{"type": "bool_parsing", "loc": ["body", "guest_mode"], "msg": "not a bool"}]},
                    status_code=422,
                )
            mock.guest_mode = value == "true"
            mock.updated_at, mock.updated_by = int(time.time() * 1000), user
            return JSONResponse({"guest_mode": mock.guest_mode, "message": "Configuration updated successfully"})

        # Route matching comes first (404/405 whatever the token), then the admin check: the routes are
        # registered for every release and answer 404/405 themselves when the release lacks them.
        def route_for(release: str) -> Any:
            def dependency(request: Request) -> str | None:
                if mock.release != release:
                    return None
                return admin(request)

            return Depends(dependency)

        @app.get("/admin/config")
        async def get_config(user: str | None = route_for(JANUARY)) -> Response:
            return JSONResponse(read(user)) if mock.release == JANUARY else not_found

        @app.put("/admin/config/guest-mode")
        async def put_config(request: Request, user: str | None = route_for(JANUARY)) -> Response:
            return await write(request, user) if mock.release == JANUARY else not_found

        @app.get("/admin/pref")
        async def get_pref(user: str | None = route_for(FEBRUARY)) -> Response:
            return JSONResponse(read(user)) if mock.release == FEBRUARY else not_found

        @app.put("/admin/pref/guest-mode")
        async def put_pref(request: Request, user: str | None = route_for(FEBRUARY)) -> Response:
            return await write(request, user) if mock.release == FEBRUARY else not_found

        @app.get("/admin/pref/guest-mode")
        async def get_pref_guest_mode() -> Response:  # February: only PUT exists on this path
            return not_allowed if mock.release == FEBRUARY else not_found

        @app.post("/jobs/{task_type}")
        async def create(task_type: str, request: Request) -> Response:
            form = await request.form()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            upload = form.get("file")
            if upload is not None and not isinstance(upload, str):
                fields["<file>"] = upload.filename or ""
            mock.forms.append(fields)
            has_file = "<file>" in fields
            if mock.release == FEBRUARY and task_type == "hls_streaming":
                if not has_file and not fields.get("input_absolute_path"):
                    return JSONResponse(
                        {"detail": "Either file or input_absolute_path must be provided"}, status_code=400
                    )
            elif not has_file:
                return JSONResponse(
                    {"detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}]},
                    status_code=422,
                )
            job_id = str(uuid.uuid4())
            now = int(time.time() * 1000)
            mock.jobs[job_id] = {
                "job_id": job_id,
                "task_type": task_type,
                "status": "queued",
                "progress": 0,
                "params": {k: v for k, v in fields.items() if k != "<file>"},
                "task_output": None,
                "error_message": None,
                "priority": int(fields.get("priority", "5")),
                "created_at": now,
                "updated_at": now,
            }
            return JSONResponse({"job_id": job_id, "status": "queued", "task_type": task_type})

        @app.get("/jobs/{job_id}")
        async def get_job(job_id: str) -> Response:
            job = mock.jobs.get(job_id)
            if job is None:
                return JSONResponse({"detail": f"Job {job_id} not found"}, status_code=404)
            return JSONResponse(job)

        return app


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
