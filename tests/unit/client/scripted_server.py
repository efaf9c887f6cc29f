"""A small *real* compute API server with scripted behaviour, for the client's unit tests.

It is a FastAPI app served by uvicorn on a loopback port in a thread, publishing real MQTT events to a
real broker. Tests script it to produce what a correct deployment won't produce on demand: jobs that
complete before the POST returns, silent failures (no event at all, as upstream does), duplicate and
foreign events, error statuses with ``Retry-After``, a body cut off mid-download, an auth service.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Upload:
    filename: str
    size: int
    sha256: str
    fields: dict[str, str]
    content_type: str


@dataclass
class Injected:
    status: int
    count: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"detail": "injected"})


class ScriptedServer:
    """The server state plus knobs for tests."""

    def __init__(self, mqtt_url: str | None) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.uploads: dict[str, Upload] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, raw path, headers)
        self.inject: dict[tuple[str, str], Injected] = {}
        # task_type -> behaviour: "queue" (default: stays queued), "complete_before_reply",
        # "fail_silently" (error, no event), "fail_with_event", "progress_then_complete"
        self.behaviour: dict[str, str] = {}
        self.newer_guest_endpoint = True
        self.guest_mode = True
        self.tokens_issued = 0
        self.refreshes = 0
        self.token_lifetime = 1800
        self.auth_required = False  # /jobs routes need a token this server issued and did not revoke
        self.issued: set[str] = set()
        self.revoked: set[str] = set()
        self.revoke_next_issued = False
        self.truncate_downloads = False
        self.mqtt_url = mqtt_url
        self._mqtt: mqtt.Client | None = None
        if mqtt_url:
            host, port = mqtt_url.removeprefix("mqtt://").split(":")
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"scripted-{uuid.uuid4().hex[:6]}"
            )
            client.connect(host, int(port))
            client.loop_start()
            self._mqtt = client
        self.app = self._build_app()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- helpers for tests -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish_event(
        self, job_id: str, event_type: str, progress: int | float | None = 0, raw: bytes | None = None
    ) -> None:
        assert self._mqtt is not None
        payload = (
            raw
            if raw is not None
            else json.dumps(
                {"job_id": job_id, "event_type": event_type, "timestamp": int(time.time() * 1000), "progress": progress}
            ).encode()
        )
        self._mqtt.publish("inference/events", payload, qos=1).wait_for_publish(5)

    def publish_worker(self, worker_id: str, payload: dict[str, Any] | None) -> None:
        assert self._mqtt is not None
        data = b"" if payload is None else json.dumps(payload).encode()
        self._mqtt.publish(f"inference/workers/{worker_id}", data, qos=1, retain=True).wait_for_publish(5)

    def set_status(self, job_id: str, status: str, progress: int | None = None, error: str | None = None) -> None:
        job = self.jobs[job_id]
        job["status"] = status
        if progress is not None:
            job["progress"] = progress
        if error is not None:
            job["error_message"] = error
        job["updated_at"] = int(time.time() * 1000)

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and p.startswith(path_prefix))

    # -- app -------------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()
        server = self

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Response:
            raw_path = request.scope.get("raw_path", b"").decode("latin-1")
            server.requests.append((request.method, raw_path, dict(request.headers)))
            injected = server.inject.get((request.method, request.url.path))
            if injected is not None and injected.count > 0:
                injected.count -= 1
                return JSONResponse(injected.body, status_code=injected.status, headers=injected.headers)
            if server.auth_required and request.url.path.startswith("/jobs"):
                token = request.headers.get("authorization", "").removeprefix("Bearer ")
                if token not in server.issued or token in server.revoked:
                    return JSONResponse({"detail": "Could not validate credentials"}, status_code=401)
            response: Response = await call_next(request)
            return response

        @app.get("/")
        async def health() -> dict[str, Any]:
            return {"status": "healthy", "service": "scripted", "version": "0.0-test", "guestMode": "on"}

        @app.get("/capabilities")
        async def capabilities() -> dict[str, Any]:
            return {"num_workers": 1, "capabilities": {"hash": 1}}

        @app.post("/jobs/{task_type}")
        async def create(task_type: str, request: Request) -> Response:
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return JSONResponse(
                    {"detail": [{"loc": ["body", "file"], "msg": "Field required", "type": "missing"}]}, status_code=422
                )
            data = await upload.read()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            prio = int(fields.get("priority", "5"))
            if not 0 <= prio <= 10:
                return JSONResponse(
                    {
                        "detail": [
                            {
                                "loc": ["body", "priority"],
                                "msg": "Input should be less than or equal to 10",
                                "type": "less_than_equal",
                            }
                        ]
                    },
                    status_code=422,
                )
            job_id = str(uuid.uuid4())
            now = int(time.time() * 1000)
            server.uploads[job_id] = Upload(
                upload.filename or "", len(data), hashlib.sha256(data).hexdigest(), fields, upload.content_type or ""
            )
            server.jobs[job_id] = {
                "job_id": job_id,
                "task_type": task_type,
                "status": "queued",
                "progress": 0,
                "params": {**fields, "input_path": f"input/{upload.filename}"},
                "task_output": None,
                "error_message": None,
                "priority": prio,
                "created_at": now,
                "updated_at": now,
                "started_at": None,
                "completed_at": None,
            }
            server.files[(job_id, "output/result.bin")] = b"R" * 300_000
            behaviour = server.behaviour.get(task_type, "queue")
            loop = asyncio.get_running_loop()
            if server._mqtt is not None:
                await loop.run_in_executor(None, server.publish_event, job_id, "queued", 0)
            if behaviour == "complete_before_reply":
                server.set_status(job_id, "completed", 100)
                await loop.run_in_executor(None, server.publish_event, job_id, "processing", 0)
                await loop.run_in_executor(None, server.publish_event, job_id, "completed", 100)
            elif behaviour == "fail_silently":
                server.set_status(job_id, "error", 100, "scripted silent failure")
            elif behaviour == "fail_with_event":
                server.set_status(job_id, "error", 100, "scripted failure")
                await loop.run_in_executor(None, server.publish_event, job_id, "error", 100)
            return JSONResponse({"job_id": job_id, "status": "queued", "task_type": task_type})

        @app.get("/jobs/{job_id}")
        async def get_job(job_id: str) -> Response:
            job = server.jobs.get(job_id)
            if job is None:
                return JSONResponse({"detail": f"Job {job_id} not found"}, status_code=404)
            return JSONResponse(job)

        @app.delete("/jobs/{job_id}")
        async def delete_job(job_id: str) -> Response:
            if server.jobs.pop(job_id, None) is None:
                return JSONResponse({"detail": f"Job {job_id} not found"}, status_code=404)
            return Response(status_code=204)

        @app.get("/jobs/{job_id}/files/{file_path:path}")
        async def download(job_id: str, file_path: str) -> Response:
            if job_id not in server.jobs:
                return JSONResponse({"detail": f"Job {job_id} not found"}, status_code=404)
            if ".." in file_path.split("/"):
                return JSONResponse({"detail": "Path traversal not allowed"}, status_code=403)
            data = server.files.get((job_id, file_path))
            if data is None:
                return JSONResponse({"detail": f"File not found: {file_path}"}, status_code=404)
            if server.truncate_downloads:

                async def broken() -> Any:
                    yield data[: len(data) // 3]
                    raise RuntimeError("scripted: connection dropped mid-body")

                return StreamingResponse(broken(), headers={"Content-Length": str(len(data))})
            return Response(data, media_type="application/octet-stream")

        @app.get("/admin/pref/guest-mode")
        async def get_pref() -> Response:
            if not server.newer_guest_endpoint:
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            return JSONResponse({"guest_mode": server.guest_mode})

        @app.put("/admin/pref/guest-mode")
        async def put_pref(request: Request) -> Response:
            if not server.newer_guest_endpoint:
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            form = await request.form()
            server.guest_mode = str(form.get("guest_mode")).lower() == "true"
            return JSONResponse({"guest_mode": server.guest_mode})

        @app.get("/admin/config")
        async def get_config() -> dict[str, Any]:
            return {"guest_mode": server.guest_mode, "auth_enabled": not server.guest_mode}

        @app.put("/admin/config/guest-mode")
        async def put_config(request: Request) -> dict[str, Any]:
            form = await request.form()
            server.guest_mode = str(form.get("guest_mode")).lower() == "true"
            return {"guest_mode": server.guest_mode}

        @app.get("/admin/jobs/storage/size")
        async def storage() -> dict[str, Any]:
            return {"total_size": 1234, "job_count": len(server.jobs)}

        @app.delete("/admin/jobs/cleanup")
        async def cleanup(days: int) -> Response:
            if days < 0:
                return JSONResponse(
                    {"detail": [{"loc": ["query", "days"], "msg": "must be >= 0", "type": "x"}]}, status_code=422
                )
            return JSONResponse({"deleted_count": 0, "freed_space": 0})

        # -- a scripted auth service on the same server ------------------------------------------------
        @app.post("/auth/token")
        async def token(request: Request) -> Response:
            form = await request.form()
            if form.get("username") != "alice" or form.get("password") != "s3cret":
                return JSONResponse({"detail": "Incorrect username or password"}, status_code=401)
            server.tokens_issued += 1
            return JSONResponse({"access_token": server.make_token(), "token_type": "bearer"})

        @app.post("/auth/token/refresh")
        async def refresh(request: Request) -> Response:
            if server.refreshes < 0:  # scripted: refresh refused
                return JSONResponse({"detail": "refresh refused"}, status_code=401)
            server.refreshes += 1
            return JSONResponse({"access_token": server.make_token(), "token_type": "bearer"})

        return app

    def make_token(self) -> str:
        import base64

        def b64(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        exp = int(time.time()) + self.token_lifetime
        token = f"{b64({'alg': 'ES256'})}.{b64({'id': 'alice', 'exp': exp, 'n': uuid.uuid4().hex})}.c2ln"
        self.issued.add(token)
        if self.revoke_next_issued:
            self.revoke_next_issued = False
            self.revoked.add(token)
        return token

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="error", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
        if self._mqtt is not None:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()


def wait_until(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``deadline_s`` (a generous one)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.05)
