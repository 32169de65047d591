"""B1-B5, each ours against its references in paired, alternating rounds.

A round runs ours and every reference once, one after the other; the next round starts with
the next one, so neither side always runs on a warmer or a busier machine. A ratio is taken
within each round and reported as the median of the rounds with their spread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.fixture import (
    Fixture,
    add_tokens,
    drop_postgres,
    postgres_database,
    seed,
    set_point_name,
    stamp_baseline,
)
from bench.harness import (
    ENDPOINT,
    WORK,
    Load,
    ProcessSet,
    cpu_meter,
    free_port,
    own_redis,
    postgres_backends,
    serve_app,
    serve_ours,
    token_script,
    tree,
    wrk,
)


@dataclass
class Target:
    """One thing a round loads: a label, where it answers, and which processes serve it."""

    label: str
    url: str
    connections: int
    cpu: list[ProcessSet]
    token: str
    script: Path | None = None  # wrk rotates the script's tokens; else `token` alone

    def warm_up(self) -> None:
        """One request first, so no round pays for a cold start."""
        response = httpx.get(self.url, headers={"wolkvox-token": self.token}, timeout=60)
        assert response.status_code == 200, f"{self.label}: {response.text[:200]}"


@dataclass
class Case:
    name: str
    measure: str
    values: list[float] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)


@dataclass
class Ratio:
    name: str
    sense: str
    target: float
    values: list[float] = field(default_factory=list)
    how: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool:
        return self.median >= self.target if self.sense == ">=" else self.median <= self.target


# Changes each side of the crowd ratio is summed over.
CROWD_REPEATS = 5
CROWD_CPU = "CPU ms of the server, per thread"


@dataclass
class Crowd:
    """Six clients right after a change: their server CPU over one client's, and over the
    same six asking again once the page is cached."""

    cold_over_one: float
    cold_over_warm: float


def _six_at_once(url: str, tokens: list[str], encoding: str = "identity") -> float:
    """The wall time, in ms, of one cold GET per token, all started at once."""
    barrier = threading.Barrier(len(tokens))
    failures: list[BaseException] = []

    def client(token: str) -> None:
        try:
            barrier.wait()
            cold_get(url, token, encoding)
        except BaseException as exc:  # reported below, after every thread ends
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(token,)) for token in tokens]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise AssertionError(f"concurrent cold clients failed: {failures[0]!r}")
    return (time.perf_counter() - started) * 1000


def cold_get(url: str, token: str, encoding: str = "identity") -> tuple[float, bytes]:
    """One GET on a new connection with the same client for ours and the floor, in ms.

    Uncompressed by default: the floor serves the same bytes as they are (httpx would
    otherwise ask ours for gzip, a different and costlier answer, compressed once per
    version)."""
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        response = client.get(url, headers={"wolkvox-token": token, "accept-encoding": encoding})
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text[:200]
    return elapsed, response.content


class Bench:
    def __init__(
        self, quick: bool, rounds: int, duration: float, baseline: Path | None = None
    ) -> None:
        self.quick = quick
        # Another tree's src/ (e.g. `git archive REV src`), served beside ours in B1 and B3.
        self.baseline = baseline
        self.rounds = 1 if quick else max(3, rounds)
        # Quick: long enough that a server slowed by a busy machine still answers.
        self.duration = 3.0 if quick else duration
        self.cases: dict[str, Case] = {}
        self.ratios: dict[str, Ratio] = {}
        self.commands: list[str] = []

    def case(self, name: str, measure: str) -> Case:
        return self.cases.setdefault(name, Case(name, measure))

    def ratio(self, name: str, sense: str, target: float, how: str) -> Ratio:
        return self.ratios.setdefault(name, Ratio(name, sense, target, how=how))

    def load(self, target: Target) -> Load:
        with cpu_meter(target.cpu) as spent:
            result = wrk(
                target.url,
                connections=target.connections,
                seconds=self.duration,
                script=target.script,
                headers=None if target.script else {"wolkvox-token": target.token},
            )
        if result.non_2xx or result.errors or result.requests == 0:
            raise AssertionError(
                f"{target.label}: {result.non_2xx} non-2xx answers, "
                f"{result.errors} socket errors, {result.requests} requests"
            )
        result.cpu_us_per_request = spent[0] / result.requests * 1e6
        case = self.case(target.label, "req/s")
        case.values.append(result.requests_per_s)
        case.loads.append(result)
        return result

    def paired(self, targets: list[Target]) -> list[dict[str, Load]]:
        """Every target once a round, the starting one rotating from round to round."""
        for target in targets:
            target.warm_up()
        rounds = []
        for index in range(self.rounds):
            shift = index % len(targets)
            order = targets[shift:] + targets[:shift]
            rounds.append({target.label: self.load(target) for target in order})
        return rounds

    def compare(
        self,
        rounds: list[dict[str, Load]],
        name: str,
        ours: str,
        reference: str,
        *,
        cpu: bool = False,
        sense: str = ">=",
        target: float = 0.0,
    ) -> None:
        how = "CPU µs per request, all serving processes" if cpu else "req/s"
        entry = self.ratio(name, sense, target, how)
        for loads in rounds:
            if cpu:
                entry.values.append(
                    loads[ours].cpu_us_per_request / loads[reference].cpu_us_per_request
                )
            else:
                entry.values.append(loads[ours].requests_per_s / loads[reference].requests_per_s)

    def small_answer(self, fixture: Fixture) -> None:
        """B1 and B3: 25 points, many tokens, ours against the floor, the peer, limits off."""
        script = token_script(fixture.small_tokens, "embedded")
        small = fixture.small_tokens[0]
        ports = {name: free_port() for name in ("ours", "off", "floor", "peer")}
        body = WORK / "small.json"
        # One server per SQLite file, ours included: the peer reads the fixture's file, and
        # ours alone wrote into a file another process had open, which no other server did.
        copy = WORK / "bench-limits-off.db"
        shutil.copyfile(fixture.database.removeprefix("sqlite:///"), copy)
        ours_copy = WORK / "bench-limits-on.db"
        shutil.copyfile(fixture.database.removeprefix("sqlite:///"), ours_copy)
        with contextlib.ExitStack() as stack:
            ours = stack.enter_context(serve_ours(ports["ours"], f"sqlite:///{ours_copy}"))
            off = stack.enter_context(
                serve_ours(
                    ports["off"],
                    f"sqlite:///{copy}",
                    env={"ROUTING_POINTS_LIMITS_ENABLED": "false"},
                )
            )
            url = {name: f"http://127.0.0.1:{port}{ENDPOINT}" for name, port in ports.items()}
            answer = httpx.get(url["ours"], headers={"wolkvox-token": fixture.small_tokens[0]})
            body.write_bytes(answer.content)
            floor = stack.enter_context(
                serve_app(ports["floor"], "bench.apps.floor:app", {"BENCH_BODY": str(body)})
            )
            db_path = fixture.database.removeprefix("sqlite:///")
            peer = stack.enter_context(
                serve_app(ports["peer"], "bench.apps.peer:app", {"BENCH_DATABASE": db_path})
            )
            peer_answer = httpx.get(
                url["peer"], headers={"wolkvox-token": fixture.small_tokens[0]}
            ).json()
            assert peer_answer["data"] == orjson.loads(body.read_bytes())["data"]
            targets = [
                Target("B1 ours", url["ours"], 32, [tree(ours.pid)], small, script),
                Target("B1 floor", url["floor"], 32, [tree(floor.pid)], small, script),
                Target("B1 peer", url["peer"], 32, [tree(peer.pid)], small, script),
                Target("B3 limits off", url["off"], 32, [tree(off.pid)], small, script),
            ]
            if self.baseline is not None:
                targets += self._baselines(stack, fixture, small, script)
            rounds = self.paired(targets)
        self.commands.append(
            f"wrk -t1 -c32 -d{self.duration:g}s --latency -s tokens.lua "
            f"'http://127.0.0.1:PORT{ENDPOINT}'"
        )
        self.compare(rounds, "B1 ours / floor (req/s)", "B1 ours", "B1 floor", target=0.7)
        self.compare(rounds, "B1 ours / floor (CPU per request)", "B1 ours", "B1 floor", cpu=True)
        self.compare(rounds, "B1 ours / peer (req/s)", "B1 ours", "B1 peer", target=5.0)
        self.compare(
            rounds, "B3 limits on / limits off (req/s)", "B1 ours", "B3 limits off", target=0.85
        )
        self.compare(
            rounds,
            "B3 limits on / limits off (CPU per request)",
            "B1 ours",
            "B3 limits off",
            cpu=True,
            sense="<=",
            target=1.18,
        )
        self.compare_baseline(rounds)

    def _baselines(
        self, stack: contextlib.ExitStack, fixture: Fixture, token: str, script: Path
    ) -> list[Target]:
        """B1 and B3 of another source tree (`--baseline`), in the same rounds as ours: the
        before and after of a change, measured in one run on one machine."""
        assert self.baseline is not None
        targets = []
        for label, limits in (("B1 baseline", "true"), ("B3 limits off, baseline", "false")):
            copy = WORK / f"bench-baseline-{limits}.db"
            shutil.copyfile(fixture.database.removeprefix("sqlite:///"), copy)
            stamp_baseline(copy, Path(str(self.baseline).split(os.pathsep)[0]))
            port = free_port()
            env = {"PYTHONPATH": str(self.baseline), "ROUTING_POINTS_LIMITS_ENABLED": limits}
            server = stack.enter_context(serve_ours(port, f"sqlite:///{copy}", env=env))
            url = f"http://127.0.0.1:{port}{ENDPOINT}"
            targets.append(Target(label, url, 32, [tree(server.pid)], token, script))
        return targets

    def compare_baseline(self, rounds: list[dict[str, Load]]) -> None:
        if self.baseline is None:
            return
        for ours, base in (
            ("B1 ours", "B1 baseline"),
            ("B3 limits off", "B3 limits off, baseline"),
        ):
            name = ours.split(" ", 1)[1]
            self.compare(rounds, f"{name}: this tree / baseline (req/s)", ours, base, target=1.0)
            self.compare(
                rounds,
                f"{name}: this tree / baseline (CPU per request)",
                ours,
                base,
                cpu=True,
                sense="<=",
                target=1.0,
            )
        self.compare(
            rounds,
            "B3 baseline: limits on / limits off (CPU per request)",
            "B1 baseline",
            "B3 limits off, baseline",
            cpu=True,
            sense="<=",
            target=1.18,
        )

    def big_answer(self, fixture: Fixture) -> bytes:
        """B2: 60,000 points, cold (first calls after a change) and warm, against the same
        bytes served by a bare ASGI app and fetched by the same client."""
        ours_port, static_port = free_port(), free_port()
        url = f"http://127.0.0.1:{ours_port}{ENDPOINT}"
        static = f"http://127.0.0.1:{static_port}{ENDPOINT}"
        token = fixture.big_token
        body = WORK / "big.json"
        cold, floor = self.case("B2 cold", "ms"), self.case("B2 same bytes, bare ASGI", "ms")
        cold_ratio = self.ratio("B2 cold / same-bytes floor", "<=", 1.5, "ms, same client")
        crowd_ratio = self.ratio(
            "B2 6 concurrent cold / 1 cold, identity (server CPU)", "<=", 1.5, CROWD_CPU
        )
        gzip_crowd_ratio = self.ratio(
            "B2 6 concurrent cold / 1 cold, gzip (server CPU)", "<=", 1.5, CROWD_CPU
        )
        # The six answers' sending is paid warm as cold: what coldness adds is the render.
        crowd_warm_ratio = self.ratio(
            "B2 6 concurrent cold / 6 concurrent warm, identity (server CPU)", "", 0.0, CROWD_CPU
        )
        floor_crowd_ratio = self.ratio(
            "B2 floor: 6 concurrent / 1, identity (server CPU)", "", 0.0, "CPU ms of the bare app"
        )
        crowd = self.case("B2 6 concurrent cold, wall", "ms")
        changes = iter(range(1_000_000))
        # Six clients, one token each: L8 allows a token only 2 requests at once.
        crowd_tokens = add_tokens(fixture.database, "0002", 6)

        def change() -> None:
            set_point_name(fixture.database, "0002", 1, f"Changed {next(changes)}")

        with serve_ours(ours_port, fixture.database) as ours:
            change()
            body.write_bytes(cold_get(url, token)[1])  # the bytes the floor serves
            with serve_app(static_port, "bench.apps.floor:app", {"BENCH_BODY": str(body)}) as bare:
                for index in range(self.rounds):
                    pair = [("ours", url), ("floor", static)]
                    measured: dict[str, float] = {}
                    for name, target in pair if index % 2 == 0 else pair[::-1]:
                        if name == "ours":
                            change()
                        measured[name] = cold_get(target, token)[0]
                    cold.values.append(measured["ours"])
                    floor.values.append(measured["floor"])
                    cold_ratio.values.append(measured["ours"] / measured["floor"])
                    plain = self._crowd(url, crowd_tokens, change, ours.pid, crowd)
                    crowd_ratio.values.append(plain.cold_over_one)
                    crowd_warm_ratio.values.append(plain.cold_over_warm)
                    packed = self._crowd(url, crowd_tokens, change, ours.pid, None, "gzip")
                    gzip_crowd_ratio.values.append(packed.cold_over_one)
                    bare_crowd = self._crowd(static, crowd_tokens, lambda: None, bare.pid, None)
                    floor_crowd_ratio.values.append(bare_crowd.cold_over_one)
                rounds = self.paired(
                    [
                        Target("B2 warm", url, 2, [tree(ours.pid)], token),
                        Target(
                            "B2 static bytes",
                            static,
                            2,
                            [tree(bare.pid)],
                            token,
                        ),
                    ]
                )
            rss = peak_rss_mb(ours.pid)
        for label in ("B2 warm", "B2 static bytes"):
            self.cases[label].measure = "req/s"
        entry = self.ratio("B2 warm / static bytes (p50)", "<=", 2.0, "p50 ms")
        entry.values += [
            loads["B2 warm"].p50_ms / loads["B2 static bytes"].p50_ms for loads in rounds
        ]
        self.case("B2 peak RSS", "MB").values.append(rss)
        self.ratio("B2 peak RSS (MB)", "<=", 250.0, "VmHWM of the server").values.append(rss)
        self.commands.append(
            f"wrk -t1 -c2 -d{self.duration:g}s --latency "
            f"-H 'wolkvox-token: T' 'http://127.0.0.1:PORT{ENDPOINT}'"
        )
        return body.read_bytes()

    def _crowd(
        self,
        url: str,
        tokens: list[str],
        change: Any,
        pid: int,
        wall: Case | None,
        encoding: str = "identity",
    ) -> Crowd:
        """Server CPU of 6 clients asking at once right after a change, over one client's,
        and over the same six asking again (warm). Each thread's CPU is read in nanoseconds
        (one render is a few ms, under the kernel's 10 ms tick), summed over a few changes."""
        one_cpu = many_cpu = warm_cpu = 0.0
        walls: list[float] = []
        server = [tree(pid)]
        for _ in range(1 if self.quick else CROWD_REPEATS):
            change()
            with cpu_meter(server, precise=True) as one:
                cold_get(url, tokens[0], encoding)
            one_cpu += one[0]
            change()
            with cpu_meter(server, precise=True) as many:
                walls.append(_six_at_once(url, tokens, encoding))
            many_cpu += many[0]
            with cpu_meter(server, precise=True) as warm:  # the same six: the page is cached
                _six_at_once(url, tokens, encoding)
            warm_cpu += warm[0]
        if wall is not None:
            wall.values.append(statistics.median(walls))
        return Crowd(many_cpu / max(one_cpu, 1e-6), many_cpu / max(warm_cpu, 1e-6))

    def scale_out(self, fixture: Fixture) -> None:
        """B4: PostgreSQL + Redis with 1 and 2 workers, against embedded with 1 worker.

        The benchmark runs its own redis-server and PostgreSQL database, so the CPU of every
        process serving a request is counted, and nothing else's."""
        database = postgres_database()
        if database is None:
            return
        try:
            seed(database, 0)
            tokens = add_tokens(database, "0001", len(fixture.small_tokens))
            dbname = database.rsplit("/", 1)[1]
            ports = {name: free_port() for name in ("embedded", "pg1", "pg2")}
            url = {name: f"http://127.0.0.1:{port}{ENDPOINT}" for name, port in ports.items()}
            with contextlib.ExitStack() as stack:
                redis_url, redis_pid = stack.enter_context(own_redis())
                embedded = stack.enter_context(serve_ours(ports["embedded"], fixture.database))
                shared = [postgres_backends(dbname), tree(redis_pid)]
                servers = {
                    name: stack.enter_context(
                        serve_ours(ports[name], database, ["--redis", redis_url, "--workers", n])
                    )
                    for name, n in (("pg1", "1"), ("pg2", "2"))
                }
                pg_script = token_script(tokens, "pg")
                baseline = self._scale_baseline(stack, database, redis_url, shared, pg_script)
                rounds = self.paired(
                    [
                        Target(
                            "B4 embedded, 1 worker",
                            url["embedded"],
                            32,
                            [tree(embedded.pid)],
                            fixture.small_tokens[0],
                            token_script(fixture.small_tokens, "embedded"),
                        ),
                        Target(
                            "B4 PG+Redis, 1 worker",
                            url["pg1"],
                            32,
                            [tree(servers["pg1"].pid), *shared],
                            tokens[0],
                            pg_script,
                        ),
                        Target(
                            "B4 PG+Redis, 2 workers",
                            url["pg2"],
                            32,
                            [tree(servers["pg2"].pid), *shared],
                            tokens[0],
                            pg_script,
                        ),
                        *([baseline] if baseline else []),
                    ]
                )
            self.compare(
                rounds,
                "B4 PG+Redis 2 workers / embedded 1 worker (req/s)",
                "B4 PG+Redis, 2 workers",
                "B4 embedded, 1 worker",
                target=1.2,
            )
            self.compare(
                rounds,
                "B4 PG+Redis 1 worker / embedded (CPU per request)",
                "B4 PG+Redis, 1 worker",
                "B4 embedded, 1 worker",
                cpu=True,
                sense="<=",
                target=2.5,
            )
            if baseline is not None:
                self.compare(
                    rounds,
                    "B4 PG+Redis 1 worker: this tree / baseline (CPU per request)",
                    "B4 PG+Redis, 1 worker",
                    baseline.label,
                    cpu=True,
                    sense="<=",
                    target=1.0,
                )
                self.compare(
                    rounds,
                    "B4 baseline: PG+Redis 1 worker / embedded (CPU per request)",
                    baseline.label,
                    "B4 embedded, 1 worker",
                    cpu=True,
                    sense="<=",
                    target=2.5,
                )
        finally:
            drop_postgres(database)

    def _scale_baseline(
        self,
        stack: contextlib.ExitStack,
        database: str,
        redis_url: str,
        shared: list[ProcessSet],
        script: Path,
    ) -> Target | None:
        """B4's PG+Redis 1 worker of another source tree (`--baseline`), in the same rounds:
        the same database and redis-server, under a Redis key prefix of its own."""
        if self.baseline is None:
            return None
        port = free_port()
        env = {"PYTHONPATH": str(self.baseline), "ROUTING_POINTS_REDIS_KEY_PREFIX": "baseline"}
        extra = ["--redis", redis_url, "--workers", "1"]
        server = stack.enter_context(serve_ours(port, database, extra, env=env))
        label = "B4 PG+Redis, 1 worker, baseline"
        url = f"http://127.0.0.1:{port}{ENDPOINT}"
        token = script.read_text().split('"')[1]  # the script's first token, as ours uses
        return Target(label, url, 32, [tree(server.pid), *shared], token, script)

    def sdk(self, body: bytes) -> None:
        """B5: a 60,000-record answer into typed objects, against orjson.loads alone."""
        from routing_points.client.base import interpret
        from routing_points.client.models import RoutingPoint

        response = httpx.Response(200, content=body, request=httpx.Request("GET", "http://x"))
        loads, typed = self.case("B5 orjson.loads", "ms"), self.case("B5 typed objects", "ms")
        entry = self.ratio("B5 typed objects / orjson.loads", "<=", 3.0, "ms, same process")
        for index in range(3 if self.quick else 7):
            steps = [("loads", lambda: orjson.loads(body))]
            steps.append(("typed", lambda: RoutingPoint.from_records(interpret(response).records)))
            measured = {}
            for name, step in steps if index % 2 == 0 else steps[::-1]:
                gc.collect()  # neither side pays for the other's garbage
                started = time.perf_counter()
                step()
                measured[name] = (time.perf_counter() - started) * 1000
            loads.values.append(measured["loads"])
            typed.values.append(measured["typed"])
            entry.values.append(measured["typed"] / measured["loads"])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
