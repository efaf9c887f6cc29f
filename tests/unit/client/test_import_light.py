"""``import cl_client`` stays light (no CLI, terminal or test libraries), and ``python -m cl_client`` is the CLI."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


HEAVY = """
import json, sys
{before}
import cl_client
heavy = {{"rich", "click", "pygments", "pytest", "_pytest", "cl_compute", "numpy", "fastapi"}}
print(json.dumps(sorted(
    m for m in sys.modules
    if m.split(".")[0] in heavy or m == "cl_client.cli" or m.startswith("cl_client._cli_")
)))
"""


def test_import_cl_client_imports_no_cli_terminal_or_test_library() -> None:
    """httpx's package imports its CLI (click, rich, pygments) when they are installed; cl_client avoids that."""
    res = run_python(HEAVY.format(before=""))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []


def test_httpx_keeps_working_as_usual_after_import_cl_client() -> None:
    code = """
import sys, cl_client, httpx
assert "httpx._main" not in sys.modules
assert httpx.Client is not None and callable(httpx.main)  # httpx's own stub ("pip install 'httpx[cli]'")
import httpx._main  # the block was lifted: the module imports when asked for
print("ok")
"""
    res = run_python(code)
    assert (res.returncode, res.stdout.strip()) == (0, "ok"), res.stderr


def test_httpx_imported_first_is_left_alone() -> None:
    res = run_python(HEAVY.format(before="import httpx, httpx._main"))
    assert res.returncode == 0, res.stderr
    assert "click" in json.loads(res.stdout)  # the caller's import of httpx's CLI stands


def test_python_dash_m_cl_client_is_the_cl_client_command() -> None:
    res = subprocess.run([sys.executable, "-m", "cl_client", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: cl-client [OPTIONS] COMMAND [ARGS]...")
    res = subprocess.run([sys.executable, "-m", "cl_client", "nope"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "No such command 'nope'" in res.stderr


def test_main_module_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["cl-client", "--version"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("cl_client", run_name="__main__")
    assert exc.value.code == 0
    assert "cl-client, version" in capsys.readouterr().out
