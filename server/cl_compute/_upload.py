"""Receive the body of ``POST /jobs/<task_type>`` as it arrives: the file goes straight to disk, once.

Starlette's ``request.form()`` spools every file part to a temporary file, which the API then had to copy into
the job directory, and it reads the whole body before anyone can look at its size. :func:`receive_job_form`
parses the ``multipart/form-data`` stream with python-multipart's streaming parser instead: the ``file`` part
is written into ``<staging>/input/<name>`` chunk by chunk, form fields are kept in memory (1 MiB each at most,
as Starlette), and the body is counted as it streams, so an upload over the limit ends with
:class:`UploadTooLarge` after at most one chunk more than the limit (the caller removes the staging directory).

The result mirrors what the API read from Starlette's ``FormData`` before: the *last* item named ``file``
decides (a file, or a plain field, which is an error), the last value of a repeated field wins, field values
are decoded with the part's charset (latin-1 when it does not decode), other file parts are ignored.
"""

from __future__ import annotations

import codecs
import contextlib
import os
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from starlette.concurrency import run_in_threadpool
from starlette.formparsers import FormParser
from starlette.requests import Request

try:
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ModuleNotFoundError:  # pragma: no cover - the older distribution name
    from multipart.exceptions import FormParserError  # type: ignore[no-redef]
    from multipart.multipart import MultipartParser, parse_options_header  # type: ignore[no-redef]

MAX_FILES = 10
MAX_FIELDS = 1000
MAX_FIELD_BYTES = 1024 * 1024


class UploadTooLarge(Exception):
    """The request body is larger than the limit (HTTP 413).

    Attributes:
        limit: the limit in bytes.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds the upload limit of {limit} bytes")
        self.limit = limit


class FormBodyError(Exception):
    """The body is not a well-formed form (HTTP 422 ``Invalid form body: …``)."""


@dataclass
class ReceivedForm:
    """What the body carried.

    Attributes:
        fields: plain form fields (the last value of a repeated name wins; ``file`` is not among them).
        file_name: the raw file name of the ``file`` part (None when the last ``file`` item is no file).
        file_path: where its bytes were written (under the staging directory), None without a file.
        file_size: bytes written.
        file_as_text: the value of a ``file`` item sent as a plain field (when it is the last ``file`` item).
        body_bytes: size of the body read.
        file_parts: how many items named ``file`` the body had (files or plain fields; more than one is refused).
    """

    fields: dict[str, str] = field(default_factory=dict)
    file_name: str | None = None
    file_path: Path | None = None
    file_size: int = 0
    file_as_text: str | None = None
    body_bytes: int = 0
    file_parts: int = 0


def content_length(request: Request) -> int | None:
    """The declared ``Content-Length`` (None when absent or not a number)."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _decode(data: bytes | bytearray, charset: str) -> str:
    try:
        return bytes(data).decode(charset)
    except (UnicodeDecodeError, LookupError):
        return bytes(data).decode("latin-1")


async def _counted(request: Request, limit: int | None, form: ReceivedForm) -> AsyncGenerator[bytes]:
    async for chunk in request.stream():
        form.body_bytes += len(chunk)
        if limit is not None and form.body_bytes > limit:
            raise UploadTooLarge(limit)
        if chunk:
            yield chunk


class _Part:
    def __init__(self) -> None:
        self.disposition: bytes = b""
        self.name = ""
        self.is_file = False
        self.keep = False  # the bytes of this file part are stored (it is named ``file``)
        self.data = bytearray()


class _MultipartReceiver:
    """python-multipart callbacks collecting fields and queueing the file bytes for the writer."""

    def __init__(self, form: ReceivedForm, charset: str, name_to_path: Callable[[str], Path]) -> None:
        self.form = form
        self.charset = charset
        self.name_to_path = name_to_path
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""
        self.files = 0
        self.field_count = 0
        #: ("open", path) / ("data", bytes) / ("close", None) for the writer, in order
        self.ops: list[tuple[str, object]] = []

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.part.disposition = self.header_value
        self.header_name = b""
        self.header_value = b""

    def on_headers_finished(self) -> None:
        _disposition, options = parse_options_header(self.part.disposition)
        if b"name" not in options:
            raise FormBodyError('The Content-Disposition header field "name" must be provided.')
        self.part.name = _decode(options[b"name"], self.charset)
        if self.part.name == "file":
            self.form.file_parts += 1
        if b"filename" in options:
            self.files += 1
            if self.files > MAX_FILES:
                raise FormBodyError(f"Too many files. Maximum number of files is {MAX_FILES}.")
            self.part.is_file = True
            if self.part.name == "file":
                self.part.keep = True
                self.form.file_name = _decode(options[b"filename"], self.charset)
                self.form.file_as_text = None
                self.form.file_size = 0
                self.ops.append(("open", self.name_to_path(self.form.file_name)))
        else:
            self.field_count += 1
            if self.field_count > MAX_FIELDS:
                raise FormBodyError(f"Too many fields. Maximum number of fields is {MAX_FIELDS}.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.is_file:
            if self.part.keep:
                self.form.file_size += end - start
                self.ops.append(("data", data[start:end]))
            return
        if len(self.part.data) + (end - start) > MAX_FIELD_BYTES:
            raise FormBodyError(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")
        self.part.data += data[start:end]

    def on_part_end(self) -> None:
        if self.part.keep:
            self.ops.append(("close", None))
        elif not self.part.is_file:
            value = _decode(self.part.data, self.charset)
            if self.part.name == "file":
                self.ops.append(("drop", None))
                self.form.file_as_text = value
                self.form.file_name = None
                self.form.file_size = 0
            else:
                self.form.fields[self.part.name] = value


class _Writer:
    """Runs the receiver's queued file operations in a thread (never on the event loop)."""

    def __init__(self, form: ReceivedForm) -> None:
        self.form = form
        self.handle: IO[bytes] | None = None
        self.path: Path | None = None

    def _drop(self) -> None:
        self._close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self.path = None
        self.form.file_path = None

    def _close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def run(self, ops: list[tuple[str, object]]) -> None:
        for op, arg in ops:
            if op == "open":
                assert isinstance(arg, Path)
                self._drop()  # a later ``file`` part replaces an earlier one
                arg.parent.mkdir(parents=True, exist_ok=True)
                self.handle = open(arg, "wb")  # noqa: SIM115 - closed by "close" or close()
                self.path = arg
                self.form.file_path = arg
            elif op == "data":
                assert self.handle is not None
                assert isinstance(arg, bytes)
                self.handle.write(arg)
            elif op == "close":
                self._close()
            elif op == "drop":
                self._drop()

    def close(self) -> None:
        self._close()


async def receive_job_form(request: Request, name_to_path: Callable[[str], Path], limit: int | None) -> ReceivedForm:
    """Read the body of a job-creation request.

    Args:
        request: the request (its body is consumed).
        name_to_path: where the bytes of a ``file`` part with this raw file name go (a path under the caller's
            staging directory, which the caller removes on any failure).
        limit: the largest body accepted in bytes; None = no limit.

    Returns:
        The fields and the stored file. A body that is neither multipart nor urlencoded gives no fields.

    Raises:
        UploadTooLarge: the body grew over ``limit`` (nothing more is read).
        FormBodyError: malformed multipart data, too many parts, a field over 1 MiB.
        starlette.requests.ClientDisconnect: the client went away.
    """
    form = ReceivedForm()
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type == b"application/x-www-form-urlencoded":
        try:
            parsed = await FormParser(request.headers, _counted(request, limit, form), max_fields=MAX_FIELDS).parse()
        except UploadTooLarge:
            raise
        except Exception as exc:
            raise FormBodyError(getattr(exc, "message", None) or str(exc)) from exc
        for key, value in parsed.multi_items():
            if key == "file":
                form.file_parts += 1
            if isinstance(value, str):
                if key == "file":
                    form.file_as_text = value
                else:
                    form.fields[key] = value
        return form
    if content_type != b"multipart/form-data":
        return form
    charset_raw = params.get(b"charset", b"utf-8")
    try:
        charset = codecs.lookup(charset_raw.decode("latin-1")).name
    except LookupError:
        charset = "latin-1"
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormBodyError("Missing boundary in multipart.")
    receiver = _MultipartReceiver(form, charset, name_to_path)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": receiver.on_part_begin,
            "on_part_data": receiver.on_part_data,
            "on_part_end": receiver.on_part_end,
            "on_header_field": receiver.on_header_field,
            "on_header_value": receiver.on_header_value,
            "on_header_end": receiver.on_header_end,
            "on_headers_finished": receiver.on_headers_finished,
        },
    )
    writer = _Writer(form)
    try:
        async for chunk in _counted(request, limit, form):
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise FormBodyError("Invalid multipart data.") from exc
            if receiver.ops:
                ops, receiver.ops = receiver.ops, []
                await run_in_threadpool(writer.run, ops)
        try:
            parser.finalize()
        except FormParserError as exc:
            raise FormBodyError("Invalid multipart data.") from exc
        if receiver.ops:
            await run_in_threadpool(writer.run, receiver.ops)
            receiver.ops = []
    finally:
        await run_in_threadpool(writer.close)
    return form
