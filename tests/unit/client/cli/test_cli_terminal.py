"""The terminal as an attack surface (issue 22 item 4) and one exit-code rule for refused input (item 6).

Names and server text reach the terminal with their control and bidi characters written as escapes; 400, 413
and 422 all exit 2. Real deployments (the shared one; one with a 1 MiB upload limit).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from cl_client._cli_common import CliState, exit_code_for, terminal_safe
from cl_client.cli import cli
from cl_client.exceptions import HTTPStatusError
from cl_compute.deployment import Deployment

HOSTILE = "red\x1b[31m-\u202eevil\x07.txt"
RAW = ("\x1b", "\u202e", "\x07")


def run(server_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--server", server_url, "--mqtt", "off", *args], obj=CliState())


def _assert_escaped(text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"{raw!r} reached the terminal: {text!r}"
    assert "\\x1b[31m" in text and "\\u202e" in text, text


def test_a_hostile_file_name_is_printed_escaped(deployment: Deployment, tmp_path: Path) -> None:
    path = tmp_path / HOSTILE
    path.write_bytes(b"x")
    res = run(deployment.server_url, "hash", "compute", str(path))
    assert res.exit_code == 0, res.output
    _assert_escaped(res.output)


def test_a_hostile_name_in_an_error_line_is_escaped(deployment: Deployment, tmp_path: Path) -> None:
    res = run(deployment.server_url, "hash", "compute", str(tmp_path / HOSTILE))  # no such file
    assert res.exit_code == 2, res.output
    _assert_escaped(res.output)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("plain é 日本", "plain é 日本"), ("a\x1b[0mb", "a\\x1b[0mb"), ("\u202e\u2066x\u200f", "\\u202e\\u2066x\\u200f"),
     ("line\nnext\r", "line\\x0anext\\x0d"), ("\x9b31m", "\\x9b31m")],
)  # fmt: skip
def test_terminal_safe(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


def test_terminal_safe_keeps_newlines_of_messages() -> None:
    assert terminal_safe("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


@pytest.mark.parametrize("status", [400, 413, 422])
def test_refused_input_exits_2(status: int) -> None:
    request = httpx.Request("POST", "http://h/jobs/hash")
    error = HTTPStatusError("refused", method="POST", url="http://h/jobs/hash", status_code=status,
                            response=httpx.Response(status, request=request))  # fmt: skip
    assert exit_code_for(error) == 2


@pytest.fixture(scope="module")
def limited() -> Iterator[Deployment]:
    dep = Deployment(workers=0, max_upload_mb=1)
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def test_a_413_exits_2_like_a_422(limited: Deployment, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (2 * 1024 * 1024))
    res = run(limited.server_url, "hash", "compute", str(big))
    assert res.exit_code == 2, res.output
    assert "413" in res.output or "too large" in res.output.lower(), res.output
