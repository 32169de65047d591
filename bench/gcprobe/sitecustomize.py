"""A probe, not part of any server: every garbage collection's generation and pause, per process.

Put this folder on a server's PYTHONPATH (after its src/) and set GCPROBE_DIR: each process
(and each forked worker, such as granian's) appends `time, generation, ms, collected` rows to
GCPROBE_DIR/gc-TREE-PID.tsv once a second. bench/SERVERS.md shows how it traced the p99.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any

_directory = os.environ.get("GCPROBE_DIR")
_rows: list[tuple[float, int, float, int]] = []
_started = [0.0]
_path = [""]


def _open_log(note: str) -> None:
    tree = os.environ.get("PYTHONPATH", "x/x").split(os.pathsep)[0].rstrip("/").split("/")[-2]
    _path[0] = os.path.join(_directory or ".", f"gc-{tree}-{os.getpid()}.tsv")
    with open(_path[0], "a") as log:
        log.write(f"# {note} ppid={os.getppid()} argv={sys.argv}\n")
    threading.Thread(target=_flush_every_second, daemon=True).start()


def _collected(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    pause_ms = (time.perf_counter() - _started[0]) * 1000
    _rows.append((round(time.time(), 3), info["generation"], round(pause_ms, 3), info["collected"]))


def _flush_every_second() -> None:
    while True:
        time.sleep(1)
        rows = _rows[:]
        del _rows[: len(rows)]
        with open(_path[0], "a") as log:
            log.writelines("\t".join(map(str, row)) + "\n" for row in rows)


def _forked() -> None:
    _rows.clear()
    _open_log("forked")  # the parent's flushing thread does not survive a fork


if _directory:
    gc.callbacks.append(_collected)
    _open_log("started")
    os.register_at_fork(after_in_child=_forked)
