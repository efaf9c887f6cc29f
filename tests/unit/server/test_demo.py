"""``examples/demo.py`` as a newcomer runs it: results a person recognises, in a narrow terminal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PNG = ROOT / "pytest_cl" / "media" / "images" / "synthetic_800x600.png"


def test_the_demo_shows_the_md5_in_hex_and_fits_60_columns() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CL_SERVER_URL", "CL_MQTT_URL")}
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, env={**env, "COLUMNS": "60"},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    too_wide = [line for line in lines if len(line) > 60]
    assert too_wide == [], too_wide
    md5 = hashlib.md5(PNG.read_bytes()).hexdigest()
    at = lines.index("✓ hash  synthetic_800x600.png")
    assert lines[at + 1].strip() == f"md5 {md5}", lines[at : at + 2]
    assert "media_type" not in run.stdout  # the raw task_output the old demo printed
    for plugin in ("exif", "face_detection", "clip_embedding", "hls_streaming"):
        assert any(line.startswith(f"✓ {plugin}  ") for line in lines), (plugin, run.stdout)
    assert any(line.startswith("✗ hash  empty.jpg") for line in lines), run.stdout
    assert "4 faces" in run.stdout and "make=Canon" in run.stdout
