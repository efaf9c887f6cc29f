"""The README runs as written: its code blocks against a default ``cl-compute up`` (API 8002, broker 1883).

Every fenced block of README.md is read:

* ``python`` blocks run as scripts, unchanged, in a folder holding the example files they name (``a.jpg``,
  ``clip.mp4``, ...: copies of the committed test media), with no ``CL_*`` variables set; a block that defines
  ``test_*`` functions is a test module and runs through pytest against the deployment (``--cl-server``);
* ``bash`` / ``sh`` blocks: every command line either runs literally (``cl-client …``, ``curl …``) and must exit 0,
  or matches one of ``NOT_RUN`` with the reason it cannot run here (an example host, the install itself, the
  repository's own CI commands). A new command that is neither fails this test, so the README cannot drift.

The deployment is ``python -m cl_compute up`` with no options: exactly what the README tells users to start.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_helpers import UpProcess, default_ports_lock

from pytest_cl._media import load_catalogue

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
API = "http://127.0.0.1:8002"

#: the example file names the README's snippets use -> the committed test media copied under that name.
EXAMPLE_FILES = {
    "a.jpg": "face_hopper",
    "b.jpg": "jpeg_1920x1080",
    "a.png": "png_800x600",
    "photo.jpg": "jpeg_exif",
    "group.jpg": "group_4_faces",
    "clip.mp4": "video_720p_5s_audio",
}

#: shell lines that are documentation but cannot run in this test, each with the reason.
NOT_RUN: tuple[tuple[str, str], ...] = (
    (r"^(pip|uv pip) install\b", "installs packages (CI installs the wheel the same way in .ci/install-check)"),
    (r"^(sudo )?apt-get install\b", "installs system packages (.ci/run does it)"),
    (r"compute\.example|\bhost:\d+|//host\b|\bHOST\b", "names an example host of the reader's own"),
    (r"^(uv run )?cl-compute up\b", "starts a deployment: this test's deployment is exactly `cl-compute up`"),
    (r"^(uv run )?cl-compute (serve|worker|token)\b", "starts a part of a deployment (tests/unit/server)"),
    (r"^uv run (pytest|cl-client certify)\b", "the repository's own test and main commands (run by .ci/run)"),
    (r"^uv run python (examples|benchmarks)/", "repository scripts (the demo and the benchmarks)"),
    (r"^(bash )?\.ci/", "CI itself"),
    (r"^export ", "sets variables for the reader's shell"),
    (
        r"^(cl-client load|locust)\b",
        "a load run of a minute or more (cl-client load --workers 2 runs in "
        ".ci/install-check and tests/unit/client/test_load_distributed.py; locust -f spans several machines)",
    ),
    (r"^(pytest|cl-client certify)\b(?!.*localhost)", "a certification run of the reader's own suites/deployment"),
)

RUN_PREFIXES = ("cl-client ", "python -m cl_client ", "curl ")

#: environment variables that would point a snippet somewhere other than the documented defaults.
CLIENT_ENV = ("CL_SERVER_URL", "COMPUTE_URL", "CL_MQTT_URL", "MQTT_URL", "CL_AUTH_URL", "AUTH_URL", "CL_TOKEN")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    lang: str
    code: str
    line: int  # 1-based line of the opening fence

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.lang} block)"


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md with its language and line."""
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            start = i
            i += 1
            body: list[str] = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(m.group(1), "\n".join(body) + "\n", start + 1))
        i += 1
    return blocks


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped."""
    commands: list[str] = []
    pending = ""
    for raw in code.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line.strip()
        pending = ""
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing "  # comment"
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def classify(command: str) -> str | None:
    """``"run"``, or None when the command is documented as not runnable here (``NOT_RUN``).

    Raises:
        AssertionError: the command is neither runnable nor listed in ``NOT_RUN``.
    """
    for pattern, _reason in NOT_RUN:
        if re.search(pattern, command):
            return None
    if command.startswith(RUN_PREFIXES):
        return "run"
    raise AssertionError(
        f"README shell command {command!r} is neither run by this test (it starts with one of {RUN_PREFIXES}) "
        "nor listed in NOT_RUN with a reason: make it runnable against a default `cl-compute up`, or add it"
    )


def test_readme_blocks_are_found_and_every_shell_command_is_classified() -> None:
    blocks = readme_blocks()
    langs = {b.lang for b in blocks}
    assert {"python", "bash"} <= langs, f"README blocks found: {sorted(langs)}"
    run = [c for b in blocks if b.lang in ("bash", "sh") for c in shell_commands(b.code) if classify(c)]
    assert any(c.startswith("cl-client ") for c in run), f"no runnable cl-client command in the README: {run}"


def test_shell_command_parsing() -> None:
    code = "a b \\\n  c   # comment\n# only a comment\n\ncl-client health  # ok\n"
    assert shell_commands(code) == ["a b c", "cl-client health"]
    assert classify("cl-client health") == "run"
    assert classify("pip install cl-client") is None
    assert classify("cl-client certify http://compute.example:8002") is None
    with pytest.raises(AssertionError, match="neither run"):
        classify("rm -rf /")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``cl-compute up`` with its defaults (all plugins, API 8002, broker 1883), held for the module."""
    data = tmp_path_factory.mktemp("up-data")
    with default_ports_lock():
        with UpProcess("--data-dir", str(data)) as up:
            lines = up.wait_banner(timeout=300)
            if f"API server:  {API}" not in lines or not any("mqtt://127.0.0.1:1883" in x for x in lines):
                pytest.skip(f"8002 or 1883 is taken on this machine, so up fell back to other ports:\n{up.output()}")
            yield API


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with the example files the snippets name."""
    catalogue = load_catalogue()
    for name, item in EXAMPLE_FILES.items():
        shutil.copyfile(catalogue[item].path, tmp_path / name)
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV and not k.startswith("PYTEST_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(args: list[str] | str, cwd: Path, where: str, *, shell: bool = False) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        args, cwd=cwd, env=_env(), shell=shell, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, (
        f"{where} exited with {run.returncode} against a default `cl-compute up`\n"
        f"--- stdout ---\n{run.stdout[-4000:]}\n--- stderr ---\n{run.stderr[-4000:]}"
    )
    return run


PYTHON_BLOCKS = [b for b in readme_blocks() if b.lang == "python"]
SHELL_COMMANDS = [
    (b, c) for b in readme_blocks() if b.lang in ("bash", "sh") for c in shell_commands(b.code) if classify(c)
]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"line{b.line}" for b in PYTHON_BLOCKS])
def test_python_block_runs_as_written(block: Block, deployment: str, workdir: Path) -> None:
    if re.search(r"^def test_\w+\(", block.code, re.MULTILINE):
        path = workdir / "test_readme_example.py"
        path.write_text(block.code, encoding="utf-8")
        run = _run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(path), "--cl-server", deployment],
            workdir,
            block.where,
        )
        closing = run.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"[1-9]\d* passed in [\d.]+s", closing), f"{block.where}: not all passed\n{run.stdout}"
    else:
        path = workdir / "readme_snippet.py"
        path.write_text(block.code, encoding="utf-8")
        _run([sys.executable, str(path)], workdir, block.where)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("block", "command"), SHELL_COMMANDS, ids=[f"line{b.line}-{c.split()[1]}" for b, c in SHELL_COMMANDS]
)
def test_shell_command_runs_as_written(block: Block, command: str, deployment: str, workdir: Path) -> None:
    _run(command, workdir, f"{block.where}: {command!r}", shell=True)
