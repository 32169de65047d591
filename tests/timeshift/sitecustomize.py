"""Moves the wall clock of every Python process a test run starts, for CI's dated rerun.

With this folder on PYTHONPATH and ROUTING_POINTS_TEST_TIME_SHIFT_DAYS=N, each Python
process (pytest, and every server, CLI or watcher it starts, since they inherit the
environment) sees `time.time()`, `datetime.now()` and friends N days ahead, still ticking.
Monotonic clocks and timed waits are untouched, so timeouts behave. PostgreSQL and Redis
keep their own clocks: the rerun selects the `dated` tests on SQLite.

Why not libfaketime: with Debian's 0.9.10 and Python 3.11, a timed lock wait
(`threading.Event().wait(1)`) never returns, and with FAKETIME_DONT_FAKE_MONOTONIC=1
`time.sleep()` fails with EINVAL instead.
"""

from __future__ import annotations

import os

_days = os.environ.get("ROUTING_POINTS_TEST_TIME_SHIFT_DAYS")
if _days:
    import time
    from datetime import timedelta

    import time_machine

    time_machine.travel(time.time() + timedelta(days=float(_days)).total_seconds()).start()
