"""CI's dated rerun really moves the clock, in pytest and in the processes tests start.

The kernel's file times are the real clock (the shift moves only Python's view of it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.dated

SHIFT_S = float(os.environ.get("ROUTING_POINTS_TEST_TIME_SHIFT_DAYS", "0")) * 86_400
PROBE = "import time; print(time.time())"


def test_every_process_sees_the_shifted_clock(tmp_path: Path) -> None:
    marker = tmp_path / "now"
    marker.touch()
    real = marker.stat().st_mtime
    # Generous against a slow machine; the shift under test is 400 days (34,560,000 s).
    assert abs(time.time() - SHIFT_S - real) < 600
    child = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = child.stdout.strip()
    assert abs(float(seen) - SHIFT_S - real) < 600
