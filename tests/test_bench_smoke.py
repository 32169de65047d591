"""The benchmark harness cannot rot: its smoke mode runs every case in CI.

It asserts that every case ran and every answer had the expected status (the harness
raises otherwise), never a speed: timings live in bench/RESULTS.md, not in tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import service_missing

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_every_benchmark_case_runs(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        service_missing("wrk", FileNotFoundError("wrk (apt-get install wrk)"))
    output = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = output.read_text()
    for case in (
        "B1 ours",
        "B1 floor",
        "B1 peer",
        "B3 limits off",
        "B2 cold",
        "B2 same bytes, bare ASGI",
        "B2 6 concurrent cold, wall",
        "B2 warm",
        "B2 static bytes",
        "B2 peak RSS",
        "B4 PG+Redis, 2 workers",
        "B5 typed objects",
    ):
        assert f"| {case} |" in report, case
    # Every ratio is reported with its spread, and the CPU ratios are there.
    for ratio in (
        "B3 limits on / limits off (CPU per request)",
        "B4 PG+Redis 1 worker / embedded (CPU per request)",
        "B2 cold / same-bytes floor",
        "B2 6 concurrent cold / 1 cold, identity (server CPU)",
        "B2 6 concurrent cold / 1 cold, gzip (server CPU)",
    ):
        row = next(line for line in report.splitlines() if line.startswith(f"| {ratio} |"))
        median, spread = (cell.strip() for cell in row.split("|")[2:4])
        low, high = (float(value) for value in spread.split("-"))
        assert low <= float(median) <= high, row
