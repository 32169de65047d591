"""The benchmarks (B1-B5): ratios to references measured in paired rounds of one run.

    python -m bench.run [--quick] [--output bench/RESULTS.md] [--rounds 3] [--duration 10]

Starts everything it measures on 127.0.0.1, drives bounded load with wrk, stops all it
started, and writes the results. `--quick` is the CI smoke mode: one short round per case; it
asserts only that every case ran and answered the expected status, never a speed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from bench.cases import Bench
from bench.fixture import seed
from bench.harness import ROOT, WORK
from bench.report import render

CASES = {"small", "big", "scale", "sdk"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke mode")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (at least 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--cases",
        default="small,big,scale,sdk",
        help="Which groups to run: small (B1, B3), big (B2), scale (B4), sdk (B5)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another tree's src/ folder (git archive REV src | tar -x -C DIR), then any "
        "folders of dependencies it needs, joined by ':' (its PYTHONPATH): its B1, B3 and "
        "B4 PG+Redis 1 worker run in the same rounds as ours, for a before/after in one run",
    )
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    unknown = sorted(cases - CASES)
    if unknown:
        parser.error(f"--cases: {', '.join(unknown)} is not one of {', '.join(sorted(CASES))}")
    if args.baseline is not None:
        src = Path(str(args.baseline).split(":")[0])
        if not (src / "routing_points" / "__init__.py").is_file():
            parser.error(
                f"--baseline: {src} is not a src/ folder holding routing_points "
                "(git archive REV src | tar -x -C DIR, then pass DIR/src)"
            )
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (scripts/bench installs it from Debian's packages)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    bench = Bench(args.quick, args.rounds, args.duration, args.baseline)
    fixture = seed(f"sqlite:///{WORK / 'bench.db'}", 128)
    if "small" in cases:
        bench.small_answer(fixture)
    if cases & {"big", "sdk"}:
        body = bench.big_answer(fixture)
        if "sdk" in cases:
            bench.sdk(body)
    if "scale" in cases:
        bench.scale_out(fixture)
    output = args.output or (WORK / "RESULTS.md" if args.quick else ROOT / "bench" / "RESULTS.md")
    report = render(bench)
    output.write_text(report)
    print(report)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
