"""The server choice, measured: ours (and the floor) under uvicorn and under granian.

    python -m bench.granian [--rounds 3] [--duration 5] [--only on,off,floor]
        [--granian-option=--runtime-threads=2] [--baseline DIR/src[:DEPS]]

B1's load (wrk -t1 -c32, 128 tokens rotated by tokens.lua) on ours with limits on and off,
and on the floor, each under uvicorn (`routing-points serve`: uvloop, httptools and the
bounded protocol) and under granian (ASGI, uvloop, the app factory), in paired rounds whose
starting target rotates. Prints req/s, p50, p99 and CPU µs per request for every round, and
the median ratios of granian to uvicorn. `--baseline` serves another tree's src/ with limits
on under both servers in the same rounds (how the GC pauses were traced: bench/SERVERS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import httpx

from bench.cases import Bench, Target
from bench.fixture import seed, stamp_baseline
from bench.harness import (
    ENDPOINT,
    PYTHON,
    QUIET,
    WORK,
    Load,
    free_port,
    process,
    serve_app,
    serve_ours,
    token_script,
    tree,
)

GRANIAN = ["-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--workers", "1"]
GRANIAN += ["--no-access-log", "--log-level", "warning", "--loop", "uvloop"]
FACTORY = "routing_points.server.app:app_from_environment"
Server = contextlib.AbstractContextManager[subprocess.Popen[bytes], bool | None]


def serve_granian(
    port: int, app: str, env: dict[str, str], options: list[str], factory: bool = False
) -> Server:
    """An ASGI app under granian, one worker; `options` last, so they override ours."""
    command = [PYTHON, *GRANIAN, *options, "--port", str(port)]
    return process([*command, *(["--factory"] if factory else []), app], port, env)


def ours_env(database: str, limits: bool) -> dict[str, str]:
    """What `serve` would pass: granian's worker builds the app from ROUTING_POINTS_*."""
    return {
        **QUIET,
        "ROUTING_POINTS_DATABASE_URL": database,
        "ROUTING_POINTS_LIMITS_ENABLED": str(limits).lower(),
    }


def copy_database(source: str, name: str) -> str:
    """One server per SQLite file: each gets its own copy."""
    target = WORK / f"granian-{name}.db"
    shutil.copyfile(source.removeprefix("sqlite:///"), target)
    return f"sqlite:///{target}"


def baseline_name(baseline: Path) -> str:
    return Path(str(baseline).split(os.pathsep)[0]).resolve().parent.name


class Servers:
    """The targets of one run, started in an ExitStack that stops them all."""

    def __init__(self, stack: contextlib.ExitStack[bool | None], token: str, script: Path) -> None:
        self.stack, self.token, self.script = stack, token, script
        self.targets: list[Target] = []

    def add(self, label: str, server: Server, port: int) -> None:
        child = self.stack.enter_context(server)
        url = f"http://127.0.0.1:{port}{ENDPOINT}"
        self.targets.append(Target(label, url, 32, [tree(child.pid)], self.token, self.script))

    def ours(self, database: str, limits: bool, options: list[str]) -> None:
        name = "on" if limits else "off"
        port = free_port()
        env = {"ROUTING_POINTS_LIMITS_ENABLED": str(limits).lower()}
        copy = copy_database(database, f"uvicorn-{name}")
        self.add(f"uvicorn limits {name}", serve_ours(port, copy, env=env), port)
        port = free_port()
        env = ours_env(copy_database(database, f"granian-{name}"), limits)
        self.add(f"granian limits {name}", serve_granian(port, FACTORY, env, options, True), port)

    def baseline(self, database: str, baseline: Path, options: list[str]) -> None:
        name = baseline_name(baseline)
        for server_name in ("uvicorn", "granian"):
            port = free_port()
            copy = copy_database(database, f"{server_name}-{name}")
            stamp_baseline(Path(copy.removeprefix("sqlite:///")), Path(str(baseline).split(":")[0]))
            env = {"PYTHONPATH": str(baseline)}
            if server_name == "uvicorn":
                server = serve_ours(port, copy, env=env)
            else:
                server = serve_granian(port, FACTORY, env | ours_env(copy, True), options, True)
            self.add(f"{server_name} {name}", server, port)

    def floor(self, url: str) -> None:
        body = WORK / "small.json"
        answer = httpx.get(url, headers={"wolkvox-token": self.token}, timeout=60)
        body.write_bytes(answer.content)
        env = {"BENCH_BODY": str(body)}
        port = free_port()
        self.add("uvicorn floor", serve_app(port, "bench.apps.floor:app", env), port)
        port = free_port()
        self.add("granian floor", serve_granian(port, "bench.apps.floor:app", env, []), port)


def report(rounds: list[dict[str, Load]], kinds: list[str]) -> None:
    columns = ("req/s", "p50 ms", "p99 ms")
    print(f"{'round':>5} {'target':<22}", *(f"{c:>8}" for c in columns), f"{'CPU µs/req':>11}")
    for index, loads in enumerate(rounds, 1):
        for label, load in loads.items():
            print(
                f"{index:>5} {label:<22} {load.requests_per_s:>8.0f} {load.p50_ms:>8.2f} "
                f"{load.p99_ms:>8.2f} {load.cpu_us_per_request:>11.1f}"
            )
    for kind in kinds:
        uvicorn, granian = f"uvicorn {kind}", f"granian {kind}"
        if uvicorn not in rounds[0]:
            continue
        rate = [r[granian].requests_per_s / r[uvicorn].requests_per_s for r in rounds]
        cpu = [r[granian].cpu_us_per_request / r[uvicorn].cpu_us_per_request for r in rounds]
        p99 = {side: statistics.median(r[side].p99_ms for r in rounds) for side in rounds[0]}
        print(
            f"{kind}: granian/uvicorn req/s {statistics.median(rate):.2f}, "
            f"CPU/req {statistics.median(cpu):.2f}; median p99 uvicorn {p99[uvicorn]:.2f} ms, "
            f"granian {p99[granian]:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (at least 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load")
    parser.add_argument(
        "--granian-option", action="append", default=[], dest="options", metavar="OPTION"
    )
    parser.add_argument(
        "--only", default="on,off,floor", help="on (limits on), off (limits off), floor"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="another tree's src/ (git archive REV src | tar -x -C DIR), then ':' and any "
        "folders of dependencies it needs; repeatable, labelled by DIR's name",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (scripts/bench installs it from Debian's packages)")
    if importlib.util.find_spec("granian") is None:
        sys.exit("granian is not installed (a comparison only: .venv/bin/pip install granian)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    fixture = seed(f"sqlite:///{WORK / 'bench.db'}", 128)
    only = set(args.only.split(","))
    script = token_script(fixture.small_tokens, "granian")
    with contextlib.ExitStack() as stack:
        servers = Servers(stack, fixture.small_tokens[0], script)
        for limits in (True, False):
            if ("on" if limits else "off") in only:
                servers.ours(fixture.database, limits, args.options)
        for baseline in args.baseline:
            servers.baseline(fixture.database, baseline, args.options)
        if "floor" in only and servers.targets:
            servers.floor(servers.targets[0].url)
        rounds = Bench(False, args.rounds, args.duration).paired(servers.targets)
    print(f"granian options: {args.options or 'none'}; wrk -t1 -c32 -d{args.duration:g}s")
    report(rounds, ["limits on", "limits off", "floor", *map(baseline_name, args.baseline)])


if __name__ == "__main__":
    main()
