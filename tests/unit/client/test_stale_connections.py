"""A server error never breaks the next request (PROTOCOL §8: upstream closes the keep-alive connection after an
unhandled 500 without ``Connection: close``; the next request on that pooled connection died with "Server
disconnected without sending a response" / ECONNRESET, "not retried").

The server here is a real HTTP/1.1 server on a socket, written for the one behaviour no correct server has on
demand: it answers the first request of each connection with keep-alive, then drops the connection as soon as
the next request starts to arrive, without handling it (the unread bytes make the kernel send a reset). It
records every request it *handled*, so a job created twice would show.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cl_client import AsyncComputeClient, ComputeClient, ComputeConnectionError


@dataclass
class DroppingServer:
    """Handles one request per connection, then drops the connection when the next one arrives.

    ``drop_first``: drop even the first request of each connection after reading it (a request that reached
    the server on a fresh connection: the client must not send a POST again then).
    """

    drop_first: bool = False
    handled: list[tuple[str, str, bytes]] = field(default_factory=list[tuple[str, str, bytes]])
    received_posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                method, path, body = self._read_request(conn)
                if method == "POST":
                    with self.lock:
                        self.received_posts += 1
                if self.drop_first:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return  # read it, handled nothing, reset
                conn.sendall(self._respond(method, path, body))
                conn.recv(1, socket.MSG_PEEK)  # the next request starts to arrive on this kept-alive connection
            except (OSError, ValueError):
                return
            # ... and is dropped unread, as upstream's server does after its 500: the client sees a reset
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[str, str, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ValueError("closed")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in rest:
                    rest += conn.recv(65536)
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    rest += conn.recv(65536)
                body, rest = body + rest[:size], rest[size + 2 :]
                if size == 0:
                    return method, path, body
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += conn.recv(65536)
        return method, path, rest[:length]

    def _respond(self, method: str, path: str, body: bytes) -> bytes:
        with self.lock:
            self.handled.append((method, path, body))
        if method == "POST" and path.startswith("/jobs/"):
            payload: dict[str, object] = {"job_id": str(uuid.uuid4()), "status": "queued", "task_type": "hash"}
        elif path == "/":
            payload = {"status": "healthy", "service": "dropping", "version": "0", "guestMode": "on"}
        else:
            payload = {"detail": "Not Found"}
            return self._http(404, payload)
        return self._http(200, payload)

    @staticmethod
    def _http(status: int, payload: dict[str, object]) -> bytes:
        body = json.dumps(payload).encode()
        reason = {200: "OK", 404: "Not Found"}[status]
        head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        return head.encode() + body  # keep-alive: no "Connection: close", like upstream

    def posts(self) -> list[bytes]:
        with self.lock:
            return [body for method, _, body in self.handled if method == "POST"]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dropping() -> Iterator[DroppingServer]:
    server = DroppingServer()
    yield server
    server.close()


def _uploads(tmp_path: Path, n: int) -> list[Path]:
    files: list[Path] = []
    for i in range(n):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(f"payload-{i}-{uuid.uuid4()}".encode())
        files.append(path)
    return files


def _check_each_created_once(server: DroppingServer, files: list[Path], job_ids: list[str]) -> None:
    posts = server.posts()
    for path in files:
        seen = sum(path.read_bytes() in body for body in posts)
        assert seen == 1, f"the job for {path.name} was created {seen} time(s) on the server, expected once"
    assert len(posts) == len(files), f"{len(posts)} jobs created for {len(files)} submits"
    assert len(set(job_ids)) == len(job_ids), job_ids


def test_a_submit_on_a_dropped_keepalive_connection_is_sent_again_once(dropping: DroppingServer, tmp_path: Path):
    files = _uploads(tmp_path, 6)
    with ComputeClient(dropping.url, mqtt_url="off") as client:
        job_ids = [client.submit("hash", path, {"algorithm": "md5"}).job_id for path in files]
        assert client.health().service == "dropping"  # a GET after the POSTs goes through too
    _check_each_created_once(dropping, files, job_ids)


def test_async_client_does_the_same(dropping: DroppingServer, tmp_path: Path) -> None:
    files = _uploads(tmp_path, 4)

    async def main() -> list[str]:
        async with AsyncComputeClient(dropping.url, mqtt_url="off") as client:
            return [(await client.submit("hash", path, {"algorithm": "md5"})).job_id for path in files]

    _check_each_created_once(dropping, files, asyncio.run(main()))


def test_a_post_dropped_on_a_fresh_connection_is_not_sent_again(tmp_path: Path) -> None:
    server = DroppingServer(drop_first=True)
    try:
        (path,) = _uploads(tmp_path, 1)
        with ComputeClient(server.url, mqtt_url="off") as client:
            with pytest.raises(ComputeConnectionError, match="not retried"):
                client.submit("hash", path, {"algorithm": "md5"})
        assert server.received_posts == 1, f"the POST reached the server {server.received_posts} times, expected 1"
    finally:
        server.close()
