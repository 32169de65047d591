"""bench/RESULTS.md: every ratio with its spread, every case, and how each was taken."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from bench.cases import Bench

HOW = """\
## How these figures were taken

- Every load case runs with `wrk -t1` on the same 2 cores as the servers, on 127.0.0.1.
- **Paired, alternating rounds.** Ours and every reference of a group run once per round, one
  after the other; each round starts with the next one in turn. A ratio is taken *within* a
  round, and the table gives the median of the rounds and their spread [min-max].
- **CPU per request** is the user+system CPU time, read from /proc through psutil before and
  after each load, of every process serving it: the server and its workers, the PostgreSQL
  backends of the benchmark's own database, and a redis-server started for the benchmark
  alone; divided by the requests wrk completed. It is far less disturbed than req/s by a
  neighbour on the shared machine. A CPU ratio above 1 means ours costs more.
- **B2 cold** changes one point through the store, then times one GET of the whole 60,000-point
  answer on a new connection with httpx; its floor is the same bytes served by a bare ASGI app
  (bench/apps/floor.py, on the same uvicorn) and fetched by the same client. The first round
  after the server starts reads the page whole (its records were all just kept); later ones
  splice the change in. **B2 6 concurrent cold** changes a point, then six clients ask at once:
  the server's CPU for them, over its CPU for one client after a change, each summed over 5
  changes and read per thread in nanoseconds (/proc/PID/task/TID/schedstat: one render is a
  few ms, under the 10 ms tick of the user+system times). It is taken twice: uncompressed
  (`Accept-Encoding: identity`), and with gzip, which httpx, requests and browsers ask for by
  default. Uncompressed, sending six 9.8 MB answers costs about six times one even when the
  page is shared (about 3 ms of the server's CPU each on loopback, even with sendfile), so two
  references stand beside it: the same six asking again at once (warm: only the render
  differs), and the bare app's six over one. With gzip the answer is 0.6 MB and the shared
  compression is most of the cost.
- **B5** alternates the two steps in one process, with a garbage collection before each.
"""

MISSES = """\
## What the targets still missed would take

Measured by switching parts off, in one process and served (see the closing notes of issue 14).

- **B3 CPU, with a margin under 1.18.** The limits cost about 4-6 µs a call on 40-50: the two
  RateLimit fields (about 1 µs to build, and about 0.75 µs of uvicorn's checks of each header),
  the ledger record and its fold (about 1.3 µs), admission and release (1.5-2 µs). What is left
  is Python's own cost per step. A clear margin would take sending `RateLimit-Policy` less often
  than on every answer (a change clients would see), or compiling the hot path.
- **B2 6 concurrent cold / 1 cold, uncompressed, at 1.5.** Each client is sent 9.8 MB, which
  costs the sending server 3-5 ms of CPU on loopback even with sendfile, against a shared
  render of about 7 ms: (7 + 6 x 4) / (7 + 4) is about 2.8. The bare app's own 6 / 1 shows the
  sending alone; 6 cold / 6 warm is what the render adds.
- **B4 (scale-out) at 1.5x the embedded CPU.** Writing charges behind, every 100-200 ms per
  worker (about 1.65x; it weakens the crash bound unless Redis persists with AOF), or spending
  blocks of the budget locally with nginx hashing each token to one worker (about 1.2-1.3x).
"""


def render(bench: Bench) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`scripts/bench{' --quick' if bench.quick else ''}`: {bench.rounds} paired round(s) "
        f"of {bench.duration:g} s per load case.",
        "",
        "## Machine",
        "",
        f"- {os.cpu_count()} cores, {_cpu_model()}, {_memory()}",
        f"- Python {platform.python_version()}, {_versions()}",
        f"- wrk: `{_wrk_version()}`, on the same cores as the servers",
        "",
        "## Ratios against the targets",
        "",
        "| ratio | median | spread | rounds | target | | measured as |",
        "|---|---|---|---|---|---|---|",
    ]
    for ratio in bench.ratios.values():
        target = f"{ratio.sense} {ratio.target:g}" if ratio.target else "(reported)"
        verdict = ("met" if ratio.met else "**missed**") if ratio.target else ""
        spread = f"{min(ratio.values):.2f}-{max(ratio.values):.2f}"
        lines.append(
            f"| {ratio.name} | {ratio.median:.2f} | {spread} | {len(ratio.values)} | {target} "
            f"| {verdict} | {ratio.how} |"
        )
    lines += [
        "",
        "## Every case",
        "",
        "| case | median | unit | per round | CPU µs/request | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in bench.cases.values():
        runs = ", ".join(f"{value:.1f}" for value in case.values)
        cpu = p50 = p99 = ""
        if case.loads:
            cpu = f"{statistics.median(load.cpu_us_per_request for load in case.loads):.0f}"
            p50 = f"{statistics.median(load.p50_ms for load in case.loads):.2f}"
            p99 = f"{statistics.median(load.p99_ms for load in case.loads):.2f}"
        median = statistics.median(case.values)
        lines.append(
            f"| {case.name} | {median:.1f} | {case.measure} | {runs} | {cpu} | {p50} | {p99} |"
        )
    lines += ["", HOW, MISSES, "## Commands", "", "```", *bench.commands, "```", ""]
    return "\n".join(lines)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return "?"


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(
        f"{name} {version(name)}"
        for name in ("uvicorn", "starlette", "fastapi", "sqlalchemy", "orjson", "redis")
    )


def _wrk_version() -> str:
    result = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).splitlines()[0].strip()
