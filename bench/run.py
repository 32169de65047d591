"""The benchmarks (issue B1-B5): ratios to references measured in the same run.

    python -m bench.run [--quick] [--output bench/RESULTS.md] [--runs 3] [--duration 10]

Starts everything it measures on 127.0.0.1, drives bounded load with wrk, stops all it
started, and writes the results. `--quick` is the CI smoke mode: a second per case, and it
asserts only that every case ran and answered the expected status, never a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
PYTHON = sys.executable
ENDPOINT = "/api/v2/information.php?api=routing_points"
POSTGRES_ADMIN = os.environ.get("ROUTING_POINTS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
REDIS = os.environ.get("ROUTING_POINTS_TEST_REDIS", "redis://127.0.0.1:6379/0")
UVICORN = [
    "-m",
    "uvicorn",
    "--host",
    "127.0.0.1",
    "--workers",
    "1",
    "--no-access-log",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
]
QUIET = {"ROUTING_POINTS_ACCESS_LOG": "false", "ROUTING_POINTS_LOG_LEVEL": "WARNING"}


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    requests: int


@dataclass
class Case:
    name: str
    measure: str
    values: list[float] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(
    args: list[str], port: int, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    log = (WORK / f"server-{port}.log").open("wb")
    child = subprocess.Popen(
        args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args} did not start; see {log.name}")
            time.sleep(0.05)
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()


def serve_ours(
    port: int, database: str, extra: list[str] | None = None, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[Any]:
    command = [
        PYTHON,
        "-m",
        "routing_points",
        "serve",
        "--port",
        str(port),
        "--database",
        database,
        *(extra or []),
    ]
    return process(command, port, {**QUIET, **(env or {})})


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    script: Path | None = None,
    headers: dict[str, str] | None = None,
) -> Load:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "30s",
    ]
    if script is not None:
        command += ["-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return parse_wrk(output)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> Load:
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return Load(
        requests_per_s=float(rate.group(1)),
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(map(int, errors.groups())) if errors else 0,
        requests=int(requests.group(1)),
    )


def token_script(tokens: list[str], name: str) -> Path:
    """A wrk script that rotates through many tokens, so none has 2 requests in flight."""
    path = WORK / f"tokens-{name}.lua"
    listed = ",\n".join(f'  "{token}"' for token in tokens)
    path.write_text(
        f"tokens = {{\n{listed}\n}}\ncounter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        '  wrk.headers["wolkvox-token"] = tokens[(counter % #tokens) + 1]\n'
        "  return wrk.format()\n"
        "end\n"
    )
    return path


@dataclass
class Fixture:
    database: str
    small_tokens: list[str]
    big_token: str


def seed(database: str, tokens: int) -> Fixture:
    """Operation 0001: 25 points and many tokens; operation 0002: 60,000 points."""
    sys.path.insert(0, str(ROOT / "src"))
    from routing_points.store import admin, migrate
    from routing_points.store import points as point_store
    from routing_points.store.engine import create_sync_engine

    engine = create_sync_engine(database)
    migrate.upgrade(engine)
    admin.add_operation(engine, "0001", "Bench small", 10_000, "America/Bogota")
    admin.add_operation(engine, "0002", "Bench big", 10_000, "America/New_York")

    def record(rp_id: int) -> dict[str, str]:
        return {
            "rp_id": str(rp_id),
            "rp_name": f"Routing point {rp_id}",
            "ivr_active": "yes" if rp_id % 2 else "no",
            "chat_active": "no",
            "interaction_active": "yes",
            "crm_active": "yes" if rp_id % 3 else "no",
            "last_use": ""
            if rp_id % 7 == 0
            else f"2026-11-{1 + rp_id % 27:02d} 10:{rp_id % 60:02d}:00",
        }

    point_store.upsert_points(engine, "0001", [record(i) for i in range(101, 126)])
    point_store.upsert_points(engine, "0002", [record(i) for i in range(1, 60_001)])
    small = [admin.add_token(engine, "0001", f"bench {i}").secret for i in range(tokens)]
    big = admin.add_token(engine, "0002", "bench big").secret
    engine.dispose()
    return Fixture(database, small, big)


def postgres_database() -> str | None:
    try:
        import psycopg

        name = f"rp_bench_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"B4 skipped: PostgreSQL is not reachable ({exc})")
        return None
    from sqlalchemy.engine import make_url

    return str(make_url(POSTGRES_ADMIN).set(database=name).render_as_string(False))


def drop_postgres(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process_floor(path: Path) -> float:
    """stdlib sqlite3 fetch of the same 60,000 rows + orjson.dumps, in ms."""
    import sqlite3

    started = time.perf_counter()
    connection = sqlite3.connect(path)
    rows = connection.execute(
        "SELECT rp_id, rp_name, ivr_active, chat_active, interaction_active, crm_active, "
        "last_use_at FROM routing_points WHERE operation_id = 2 ORDER BY rp_id LIMIT 60001"
    ).fetchall()
    orjson.dumps(rows)
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return elapsed


def timed_get(url: str, token: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    response = httpx.get(url, headers={"wolkvox-token": token}, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text[:200]
    return elapsed, response.content


TARGETS = {
    "B1 ours / floor (req/s)": (">=", 0.70),
    "B1 ours / peer (req/s)": (">=", 5.0),
    "B2 warm / static bytes (p50)": ("<=", 2.0),
    "B2 cold / in-process floor": ("<=", 1.5),
    "B2 peak RSS (MB)": ("<=", 250.0),
    "B3 limits on / limits off (req/s)": (">=", 0.85),
    "B4 PG+Redis 2 workers / embedded 1 worker (req/s)": (">=", 1.2),
    "B5 typed objects / orjson.loads": ("<=", 3.0),
}


class Bench:
    def __init__(self, quick: bool, runs: int, duration: float) -> None:
        self.quick = quick
        self.runs = 1 if quick else runs
        self.duration = 1.0 if quick else duration
        self.cases: dict[str, Case] = {}
        self.ratios: dict[str, float] = {}
        self.commands: list[str] = []

    def case(self, name: str, measure: str) -> Case:
        return self.cases.setdefault(name, Case(name, measure))

    def load(self, name: str, url: str, connections: int, **kwargs: Any) -> Load:
        result = wrk(url, connections=connections, seconds=self.duration, **kwargs)
        if result.non_2xx or result.errors or result.requests == 0:
            raise AssertionError(
                f"{name}: {result.non_2xx} non-2xx answers, "
                f"{result.errors} socket errors, {result.requests} requests"
            )
        case = self.case(name, "req/s")
        case.values.append(result.requests_per_s)
        case.loads.append(result)
        return result

    def small_answer(self, fixture: Fixture) -> None:
        """B1 and B3: 25 points, many tokens, ours against the floor and the peer."""
        script = token_script(fixture.small_tokens, "embedded")
        ports = {name: free_port() for name in ("ours", "off", "floor", "peer")}
        body = WORK / "small.json"
        # One server per SQLite file: the limits-off server reads a copy.
        copy = WORK / "bench-limits-off.db"
        shutil.copyfile(fixture.database.removeprefix("sqlite:///"), copy)
        with contextlib.ExitStack() as stack:
            stack.enter_context(serve_ours(ports["ours"], fixture.database))
            stack.enter_context(
                serve_ours(
                    ports["off"],
                    f"sqlite:///{copy}",
                    env={"ROUTING_POINTS_LIMITS_ENABLED": "false"},
                )
            )
            answer = httpx.get(
                f"http://127.0.0.1:{ports['ours']}{ENDPOINT}",
                headers={"wolkvox-token": fixture.small_tokens[0]},
            )
            body.write_bytes(answer.content)
            stack.enter_context(
                process(
                    [PYTHON, *UVICORN, "--port", str(ports["floor"]), "bench.apps.floor:app"],
                    ports["floor"],
                    {"BENCH_BODY": str(body)},
                )
            )
            db_path = fixture.database.removeprefix("sqlite:///")
            stack.enter_context(
                process(
                    [PYTHON, *UVICORN, "--port", str(ports["peer"]), "bench.apps.peer:app"],
                    ports["peer"],
                    {"BENCH_DATABASE": db_path},
                )
            )
            peer_answer = httpx.get(
                f"http://127.0.0.1:{ports['peer']}{ENDPOINT}",
                headers={"wolkvox-token": fixture.small_tokens[0]},
            ).json()
            assert peer_answer["data"] == orjson.loads(body.read_bytes())["data"]
            for _ in range(self.runs):
                for name, label in (
                    ("ours", "B1 ours"),
                    ("floor", "B1 floor"),
                    ("peer", "B1 peer"),
                    ("off", "B3 limits off"),
                ):
                    self.load(label, f"http://127.0.0.1:{ports[name]}{ENDPOINT}", 32, script=script)
        self.commands.append(
            f"wrk -t1 -c32 -d{self.duration:g}s --latency -s tokens.lua "
            f"'http://127.0.0.1:PORT{ENDPOINT}'"
        )
        ours = self.cases["B1 ours"].median
        self.ratios["B1 ours / floor (req/s)"] = ours / self.cases["B1 floor"].median
        self.ratios["B1 ours / peer (req/s)"] = ours / self.cases["B1 peer"].median
        self.ratios["B3 limits on / limits off (req/s)"] = ours / self.cases["B3 limits off"].median

    def big_answer(self, fixture: Fixture) -> bytes:
        """B2: 60,000 points, cold (first call after a change) and warm."""
        sys.path.insert(0, str(ROOT / "src"))
        from routing_points.store import points as point_store
        from routing_points.store.engine import create_sync_engine

        engine = create_sync_engine(fixture.database)
        ours_port, static_port = free_port(), free_port()
        url = f"http://127.0.0.1:{ours_port}{ENDPOINT}"
        body = WORK / "big.json"
        cold, floor = self.case("B2 cold", "ms"), self.case("B2 in-process floor", "ms")
        with serve_ours(ours_port, fixture.database) as ours:
            for round_ in range(max(3, self.runs)):
                point_store.set_point(engine, "0002", 1, {"rp_name": f"Changed {round_}"})
                elapsed, content = timed_get(url, fixture.big_token)
                cold.values.append(elapsed)
                floor.values.append(in_process_floor(Path(fixture.database[10:])))
            body.write_bytes(content)
            with process(
                [PYTHON, *UVICORN, "--port", str(static_port), "bench.apps.floor:app"],
                static_port,
                {"BENCH_BODY": str(body)},
            ):
                for _ in range(self.runs):
                    for label, target in (
                        ("B2 warm", url),
                        ("B2 static bytes", f"http://127.0.0.1:{static_port}{ENDPOINT}"),
                    ):
                        result = self.load(
                            label, target, 2, headers={"wolkvox-token": fixture.big_token}
                        )
                        self.cases[label].measure = "p50 ms"
                        self.cases[label].values[-1] = result.p50_ms
            rss = peak_rss_mb(ours.pid)
        engine.dispose()
        self.case("B2 peak RSS", "MB").values.append(rss)
        self.ratios["B2 warm / static bytes (p50)"] = (
            self.cases["B2 warm"].median / self.cases["B2 static bytes"].median
        )
        self.ratios["B2 cold / in-process floor"] = cold.median / floor.median
        self.ratios["B2 peak RSS (MB)"] = rss
        self.commands.append(
            f"wrk -t1 -c2 -d{self.duration:g}s --latency "
            f"-H 'wolkvox-token: T' 'http://127.0.0.1:PORT{ENDPOINT}'"
        )
        return content

    def scale_out(self, fixture: Fixture) -> None:
        """B4: PostgreSQL + Redis with 1 and 2 workers, against embedded with 1."""
        database = postgres_database()
        if database is None:
            return
        try:
            seed(database, 0)
            sys.path.insert(0, str(ROOT / "src"))
            from routing_points.store import admin
            from routing_points.store.engine import create_sync_engine

            engine = create_sync_engine(database)
            tokens = [
                admin.add_token(engine, "0001", f"pg {i}").secret
                for i in range(len(fixture.small_tokens))
            ]
            engine.dispose()
            prefix = {"ROUTING_POINTS_REDIS_KEY_PREFIX": f"rp-bench-{secrets.token_hex(4)}"}
            ports = {name: free_port() for name in ("embedded", "pg1", "pg2")}
            with contextlib.ExitStack() as stack:
                stack.enter_context(serve_ours(ports["embedded"], fixture.database))
                for name, workers in (("pg1", "1"), ("pg2", "2")):
                    stack.enter_context(
                        serve_ours(
                            ports[name],
                            database,
                            ["--redis", REDIS, "--workers", workers],
                            env=prefix,
                        )
                    )
                for _ in range(self.runs):
                    for name, label, used in (
                        ("embedded", "B4 embedded, 1 worker", fixture.small_tokens),
                        ("pg1", "B4 PG+Redis, 1 worker", tokens),
                        ("pg2", "B4 PG+Redis, 2 workers", tokens),
                    ):
                        self.load(
                            label,
                            f"http://127.0.0.1:{ports[name]}{ENDPOINT}",
                            32,
                            script=token_script(used, name),
                        )
            self.ratios["B4 PG+Redis 2 workers / embedded 1 worker (req/s)"] = (
                self.cases["B4 PG+Redis, 2 workers"].median
                / self.cases["B4 embedded, 1 worker"].median
            )
        finally:
            drop_postgres(database)

    def sdk(self, body: bytes) -> None:
        """B5: a 60,000-record answer into typed objects, against orjson.loads alone."""
        from routing_points.client.base import interpret
        from routing_points.client.models import RoutingPoint

        response = httpx.Response(200, content=body, request=httpx.Request("GET", "http://x"))
        loads, typed = self.case("B5 orjson.loads", "ms"), self.case("B5 typed objects", "ms")
        for _ in range(1 if self.quick else 7):
            gc.collect()  # neither side pays for the other's garbage
            started = time.perf_counter()
            orjson.loads(body)
            loads.values.append((time.perf_counter() - started) * 1000)
            gc.collect()
            started = time.perf_counter()
            points = RoutingPoint.from_records(interpret(response).records)
            typed.values.append((time.perf_counter() - started) * 1000)
            assert len(points) == 60_000
        self.ratios["B5 typed objects / orjson.loads"] = typed.median / loads.median

    def report(self) -> str:
        lines = [
            "# Benchmark results",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
            f"`scripts/bench{' --quick' if self.quick else ''}`: median of {self.runs} run(s) "
            f"of {self.duration:g} s per load case, every reference measured in the same run.",
            "",
            "## Machine",
            "",
            f"- {os.cpu_count()} cores, {_cpu_model()}, {_memory()}",
            f"- Python {platform.python_version()}, {_versions()}",
            f"- wrk: `{_wrk_version()}`, on the same 2 cores as the servers",
            "",
            "## Ratios against the targets",
            "",
            "| case | measured | target | |",
            "|---|---|---|---|",
        ]
        for name, (sense, target) in TARGETS.items():
            if name not in self.ratios:
                lines.append(f"| {name} | not measured | {sense} {target:g} | |")
                continue
            value = self.ratios[name]
            met = value >= target if sense == ">=" else value <= target
            lines.append(
                f"| {name} | {value:.2f} | {sense} {target:g} | {'met' if met else '**missed**'} |"
            )
        lines += [
            "",
            "## Every case",
            "",
            "| case | median | unit | runs | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        for case in self.cases.values():
            p50 = statistics.median(load.p50_ms for load in case.loads) if case.loads else None
            p99 = statistics.median(load.p99_ms for load in case.loads) if case.loads else None
            runs = ", ".join(f"{value:.1f}" for value in case.values)
            lines.append(
                f"| {case.name} | {case.median:.1f} | {case.measure} | {runs} | "
                f"{'' if p50 is None else f'{p50:.2f}'} | "
                f"{'' if p99 is None else f'{p99:.2f}'} |"
            )
        lines += ["", "## Commands", "", "```", *self.commands, "```", ""]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke mode")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--skip-scale-out", action="store_true")
    parser.add_argument(
        "--cases",
        default="small,big,scale,sdk",
        help="Which groups to run: small (B1, B3), big (B2), scale (B4), sdk (B5)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (scripts/bench installs it from Debian's packages)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    bench = Bench(args.quick, args.runs, args.duration)
    fixture = seed(f"sqlite:///{WORK / 'bench.db'}", 128)
    cases = set(args.cases.split(","))
    if "small" in cases:
        bench.small_answer(fixture)
    if cases & {"big", "sdk"}:
        body = bench.big_answer(fixture)
        if "sdk" in cases:
            bench.sdk(body)
    if "scale" in cases and not args.skip_scale_out:
        bench.scale_out(fixture)
    output = args.output or (WORK / "RESULTS.md" if args.quick else ROOT / "bench" / "RESULTS.md")
    report = bench.report()
    output.write_text(report)
    print(report)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
