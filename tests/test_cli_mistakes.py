"""Every operator mistake, on a real process: one line naming it, non-zero, nothing created."""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from routing_points.settings import Settings
from tests.support.faults import PrivateRedis
from tests.support.processes import COMMAND, ServerProcess, cli, wait_for_port
from tests.support.services import RedisNamespace, free_port, port_in_use

pytestmark = pytest.mark.slow


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr of a refused command (and no traceback)."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def test_a_bad_setting_names_the_variable_and_the_rule(tmp_path: Path) -> None:
    env = {"ROUTING_POINTS_DAILY_CALLS_PER_LICENSE": "0"}
    line = one_line_error(cli("operations", "list", cwd=tmp_path, env=env))
    assert line == (
        "Error: ROUTING_POINTS_DAILY_CALLS_PER_LICENSE: Input should be greater than or equal to 1"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["serve"], ["demo"]])
def test_a_bad_trusted_proxy_is_one_line_before_anything_is_made(
    tmp_path: Path, command: list[str]
) -> None:
    """It was a traceback, after the database was made (and `demo` had replaced its demo)."""
    env = {"ROUTING_POINTS_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.0/33"}
    line = one_line_error(cli(*command, "--port", str(free_port()), cwd=tmp_path, env=env))
    assert line == (
        "Error: ROUTING_POINTS_TRUSTED_PROXIES: '10.0.0.0/33' is not an IP address or CIDR network"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_short_console_key_is_refused(tmp_path: Path) -> None:
    """Five characters signed every console cookie without a word."""
    env = {"ROUTING_POINTS_CONSOLE_SECRET": "short"}
    line = one_line_error(cli("operations", "list", cwd=tmp_path, env=env))
    assert line == "Error: ROUTING_POINTS_CONSOLE_SECRET: String should have at least 32 characters"


def test_a_bad_database_variable_names_the_variable(tmp_path: Path) -> None:
    env = {"ROUTING_POINTS_DATABASE_URL": "mysql://x"}
    line = one_line_error(cli("migrate", cwd=tmp_path, env=env))
    assert line.startswith("Error: ROUTING_POINTS_DATABASE_URL: must be a sqlite:///PATH")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("foo://x", "must be a sqlite:///PATH or postgresql://... URL"),
        ("sqlite://", "must name a file: sqlite:///PATH"),
        ("postgresql://a:b@host:port/x", "is not a valid database URL"),
        (
            "postgresql+asyncpg://u@h/x",
            "names driver 'postgresql+asyncpg': write postgresql://...",
        ),
    ],
)
def test_a_bad_database_option_names_the_option(tmp_path: Path, url: str, rule: str) -> None:
    line = one_line_error(cli("migrate", "--database", url, cwd=tmp_path))
    assert line == f"Error: --database: {rule}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("workers", "url", "rule"),
    [
        ("1", "127.0.0.1:6379", "must be a redis://HOST:PORT/DB (or rediss://, unix://) URL"),
        ("2", "127.0.0.1:6379", "must be a redis://HOST:PORT/DB (or rediss://, unix://) URL"),
        # A traceback from the start-up check; then quietly database 0.
        ("1", "redis://127.0.0.1:99999/0", "has a port that is not a number from 1 to 65535"),
        ("1", "redis://127.0.0.1:6379/abc", "names database 'abc': it must be a number, as in /0"),
    ],
)
def test_a_bad_redis_url_names_the_option(
    tmp_path: Path, workers: str, url: str, rule: str
) -> None:
    """It was a traceback per worker, and with 2 workers an exit code of 0."""
    database = f"sqlite:///{tmp_path / 'x.db'}"
    result = cli(
        "serve",
        "--database",
        database,
        "--redis",
        url,
        "--workers",
        workers,
        "--port",
        str(free_port()),
        cwd=tmp_path,
    )
    line = one_line_error(result)
    assert line == f"Error: --redis: {rule}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["get", "--server", "0032", "--token", "t", "--base-url"], "--base-url"),
        (["token-info", "--server", "0032", "--token", "t", "--base-url"], "--base-url"),
        (["mirror", "--once", "--upstream-server", "0032", "--upstream-url"], "--upstream-url"),
    ],
)
def test_a_base_url_without_its_scheme_is_a_usage_mistake(
    tmp_path: Path, command: list[str], option: str
) -> None:
    """It was reported as a network failure (exit 5), and the mirror created its store."""
    result = cli(*command, "127.0.0.1:8000", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith(f"Error: {option}: '127.0.0.1:8000' must start with http://")
    assert list(tmp_path.iterdir()) == []
    # A port of letters: a traceback at the first request (httpx.InvalidURL).
    result = cli(*command, "http://127.0.0.1:80a0", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith(f"Error: {option}: 'http://127.0.0.1:80a0' is not a URL: Invalid port")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        ("\u201cabc\u201d", "'\u201c' (character 1)"),
        ("t\u00f6ken", "'\u00f6' (character 2)"),
        ("ab cd", "' ' (character 3)"),
    ],
)
@pytest.mark.parametrize("command", ["get", "token-info", "watch"])
def test_a_token_no_server_could_accept_is_named_not_sent(
    tmp_path: Path, command: str, token: str, shown: str
) -> None:
    """Curly quotes from a copy, an accent: a traceback (UnicodeEncodeError) before."""
    env = {"ROUTING_POINTS_TOKEN": token}
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(command, "--server", "0032", "--base-url", url, env=env, cwd=tmp_path)
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith(f"Error: ROUTING_POINTS_TOKEN: the token cannot hold {shown}")
    assert token not in line
    assert list(tmp_path.iterdir()) == []
    # Copied with the quotes the demo prints it in: named as such (the server said only
    # PLEASE VALIDATE TOKEN), and the option named where it came from.
    result = cli(command, "--server", "0032", "--base-url", url, "--token", "'secret'")
    assert one_line_error(result).startswith(
        "Error: --token: the token is inside '': copy it without them"
    )


def test_a_misspelt_setting_is_named_with_the_nearest_one(tmp_path: Path) -> None:
    """It was ignored: the server started with the default it was meant to change."""
    database = f"sqlite:///{tmp_path / 'x.db'}"
    env = {"ROUTING_POINTS_DAILY_CALL_PER_LICENSE": "5"}
    result = cli("serve", "--database", database, "--port", str(free_port()), env=env)
    assert one_line_error(result) == (
        "Error: ROUTING_POINTS_DAILY_CALL_PER_LICENSE is not a setting "
        "(did you mean ROUTING_POINTS_DAILY_CALLS_PER_LICENSE?)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        (["serv"], "No such command 'serv'. Did you mean 'serve'?"),
        (["points", "lst"], "No such command 'lst'. Did you mean 'list'?"),
        (["frobnicate"], "No such command 'frobnicate'."),
    ],
)
def test_a_mistyped_command_is_answered_with_the_nearest_one(typed: list[str], said: str) -> None:
    result = cli(*typed)
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith(f"Error: {said} (see: "), line


def test_ctrl_c_is_one_line_and_the_shell_code(tmp_path: Path) -> None:
    """click's own was a blank line, "Aborted!" and 1, like any failure."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        process = subprocess.Popen(
            [*COMMAND, "get", "--server", "0032", "--token", "t", "--base-url", url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        listener.settimeout(60)
        connection, _ = listener.accept()  # it is asking: well past its start-up
        with connection:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip() == "interrupted"
    assert out == ""


def test_postgresql_down_names_the_url_without_its_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://rp:s3cret@127.0.0.1:{port}/routing_points"
    line = one_line_error(cli("operations", "list", "--database", url, cwd=tmp_path))
    assert f"cannot use the database postgresql://rp:***@127.0.0.1:{port}/routing_points" in line
    assert "Connection refused" in line
    assert "s3cret" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_postgresql_role_says_so(tmp_path: Path, postgres_url: str) -> None:
    url = make_url(postgres_url).set(username="no_such_role", password="pw")
    shown = url.render_as_string(hide_password=True)
    line = one_line_error(cli("migrate", "--database", url.render_as_string(False), cwd=tmp_path))
    assert f"cannot use the database {shown}" in line
    assert 'role "no_such_role" does not exist' in line


def test_an_unwritable_sqlite_path(tmp_path: Path) -> None:
    line = one_line_error(cli("migrate", "--database", "sqlite:////proc/rp.db", cwd=tmp_path))
    assert (
        line == "Error: cannot use the database sqlite:////proc/rp.db: unable to open database file"
    )
    assert not Path("/proc/rp.db").exists()


def test_a_missing_folder_is_not_created(tmp_path: Path) -> None:
    for command in (["migrate"], ["demo", "--port", str(free_port())]):
        line = one_line_error(cli(*command, "--database", "sqlite:///typo/rp.db", cwd=tmp_path))
        assert line == (
            "Error: cannot create the database typo/rp.db: the folder typo does not exist"
        ), command
        assert list(tmp_path.iterdir()) == [], command


def test_a_file_that_is_not_sqlite_is_left_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("my notes\n")
    for command in (["migrate"], ["serve", "--port", str(free_port())]):
        result = cli(*command, "--database", "sqlite:///notes.db", cwd=tmp_path)
        line = one_line_error(result)
        assert line == "Error: cannot use the database sqlite:///notes.db: file is not a database"
    assert notes.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_serve_on_a_port_in_use_creates_nothing(tmp_path: Path) -> None:
    with port_in_use() as port:
        for command in ("serve", "demo"):
            result = cli(command, "--port", str(port), cwd=tmp_path)
            line = one_line_error(result)
            assert line == (
                f"Error: cannot listen on 127.0.0.1:{port}: Address already in use "
                "(choose another with --port)"
            )
    # An address this machine does not have (TEST-NET-1): the host is wrong, not the port.
    result = cli("serve", "--host", "192.0.2.1", "--port", str(free_port()), cwd=tmp_path)
    assert one_line_error(result).endswith(
        ": Cannot assign requested address (choose another with --host)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[PrivateRedis]:
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(tmp_path / "redis").start()
    admin: Any = redis.Redis(port=server.port)
    admin.config_set("requirepass", "sekret")
    admin.close()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("credentials", "database", "reason"),
    [
        ("", "0", "it asks for a password"),
        (":wrong@", "0", "invalid username-password pair or user is disabled."),
        (":sekret@", "99", "DB index is out of range"),
    ],
)
def test_a_redis_that_refuses_us_is_named_before_anything_is_created(
    tmp_path: Path, redis_with_password: PrivateRedis, credentials: str, database: str, reason: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{redis_with_password.port}/{database}"
    folder = tmp_path / "here"
    folder.mkdir()
    result = cli("serve", "--redis", url, "--port", str(free_port()), cwd=folder)
    shown = url.replace(":sekret@", ":***@").replace(":wrong@", ":***@")
    assert one_line_error(result) == f"Error: cannot use Redis at {shown}: {reason}"
    assert list(folder.iterdir()) == []


def test_a_redis_that_does_not_answer_yet_is_a_warning_and_the_server_starts(
    tmp_path: Path,
) -> None:
    """An outage the server rides out (503 until Redis answers), not a mistake."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    server = ServerProcess("serve", "--redis", url, port=free_port(), cwd=tmp_path).wait_ready()
    try:
        ready = httpx.get(server.url + "/readyz")
    finally:
        assert server.stop()
    assert ready.status_code == 503
    assert "limits" in ready.text
    warning = f"Warning: Redis at {url} does not answer"
    assert [line for line in server.logged.splitlines() if line.startswith(warning)] != []


def test_a_second_server_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    """By any name: a symlink or a hard link to the file served three budgets at once."""
    assert cli("migrate", cwd=tmp_path).returncode == 0
    (tmp_path / "symlink.db").symlink_to("routing-points.db")
    (tmp_path / "hardlink.db").hardlink_to(tmp_path / "routing-points.db")
    first = ServerProcess("serve", port=free_port(), cwd=tmp_path).wait_ready()
    try:
        for name in ("routing-points.db", "symlink.db", "hardlink.db"):
            database = f"sqlite:///{tmp_path / name}"
            second = cli("serve", "--database", database, "--port", str(free_port()))
            line = one_line_error(second)
            assert line.startswith(f"Error: another server is already using {tmp_path / name}")
        # Refused before the file was opened: by another name, it would get a WAL of its own.
        assert not any((tmp_path / f"hardlink.db{suffix}").exists() for suffix in ("-wal", "-shm"))
    finally:
        assert first.stop()


def test_a_second_postgresql_server_without_redis_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    first = ServerProcess("serve", "--database", postgres_url, port=free_port(), cwd=tmp_path)
    first.wait_ready()
    try:
        result = cli("serve", "--database", postgres_url, "--port", str(free_port()), cwd=tmp_path)
        line = one_line_error(result)
        assert line.startswith("Error: another server keeps its limits in postgresql://")
        assert line.endswith("give every server the same --redis to run several")
    finally:
        assert first.stop()


def test_servers_with_and_without_redis_never_share_a_postgresql_budget(
    tmp_path: Path, postgres_url: str, redis_namespace: RedisNamespace
) -> None:
    """Two ways of counting one budget would overshoot it: a server without Redis and
    servers with Redis are never up on one database at once, whichever started first."""
    redis = ["--redis", redis_namespace.url]
    env = {"ROUTING_POINTS_REDIS_KEY_PREFIX": redis_namespace.prefix}
    alone = ServerProcess("serve", "--database", postgres_url, port=free_port(), cwd=tmp_path)
    alone.wait_ready()
    try:
        result = cli(
            "serve", "--database", postgres_url, *redis, "--port", str(free_port()), cwd=tmp_path
        )
        line = one_line_error(result)
        assert line.startswith("Error: a server without --redis keeps its limits in postgresql:")
    finally:
        assert alone.stop()
    shared = ServerProcess(
        "serve", "--database", postgres_url, *redis, port=free_port(), cwd=tmp_path, env=env
    )
    shared.wait_ready()
    try:
        result = cli("serve", "--database", postgres_url, "--port", str(free_port()), cwd=tmp_path)
        line = one_line_error(result)
        assert line.startswith("Error: another server keeps its limits in postgresql://")
        # Another server with the same Redis is welcome: that is how one scales out.
        second = ServerProcess(
            "serve", "--database", postgres_url, *redis, port=free_port(), cwd=tmp_path, env=env
        )
        second.wait_ready()
        assert second.stop()
    finally:
        assert shared.stop()


@pytest.mark.parametrize(
    "command",
    [
        ["operations", "list"],
        ["operations", "add", "0032", "--name", "Acme", "--licenses", "1"],
        ["tokens", "list", "0032"],
        ["tokens", "add", "0032"],
        ["tokens", "revoke", "1"],
        ["points", "list", "0032"],
        ["points", "set", "0032", "101", "--ivr", "no"],
    ],
)
def test_reading_never_creates_a_database(tmp_path: Path, command: list[str]) -> None:
    line = one_line_error(cli(*command, cwd=tmp_path))
    assert line == (
        "Error: no database at routing-points.db; create it with: "
        "routing-points migrate --database sqlite:///routing-points.db"
    )
    assert list(tmp_path.iterdir()) == []


def test_history_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    line = one_line_error(cli("history", "--history", "typo.db", cwd=tmp_path))
    assert line.startswith("Error: no history at typo.db")
    assert list(tmp_path.iterdir()) == []


def test_reading_an_empty_postgresql_database_creates_no_tables(
    tmp_path: Path, postgres_url: str
) -> None:
    shown = make_url(postgres_url).render_as_string(hide_password=True)
    line = one_line_error(cli("tokens", "list", "0032", "--database", postgres_url, cwd=tmp_path))
    assert line.startswith(f"Error: no routing-points store in {shown}; create it with: ")
    engine = create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg"))
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def watch_once(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`watch --once` against an address nobody serves: what fails first is the options."""
    url = f"http://127.0.0.1:{free_port()}"
    command = ["watch", "--server", "0032", "--base-url", url, "--once", *options]
    return cli(*command, env={"ROUTING_POINTS_TOKEN": "t"}, cwd=folder)


@pytest.mark.parametrize(
    ("history", "reason"),
    [
        (
            "missing/h.db",
            "cannot keep the history in missing/h.db: the folder missing does not exist",
        ),
        ("notes.csv", "cannot use the history sqlite:///notes.csv: file is not a database"),
        ("mysql://u@db/h", "cannot use the history mysql://u@db/h: No module named 'MySQLdb'"),
    ],
)
def test_a_history_store_that_cannot_be_used_is_one_line(
    tmp_path: Path, history: str, reason: str
) -> None:
    """Tracebacks before; and a missing folder was created, wherever the typo put it."""
    (tmp_path / "notes.csv").write_text("a,b\n")
    read = cli("history", "--history", history, cwd=tmp_path)
    if history != "missing/h.db":  # reading says there is no history there, as before
        assert one_line_error(read) == f"Error: {reason}"
    watched = watch_once(tmp_path, "--history", history)
    assert watched.returncode == 6  # not 1, which tells a cron job that something changed
    assert one_line_error(watched) == f"Error: {reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.csv"]


def test_a_metrics_port_in_use_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with port_in_use() as port:
        result = watch_once(tmp_path, "--metrics-port", str(port))
    assert result.returncode == 6
    assert one_line_error(result) == (
        f"Error: cannot serve metrics on 127.0.0.1:{port}: Address already in use "
        "(choose another with --metrics-port)"
    )
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_cli_is_still_loading_is_one_line(tmp_path: Path) -> None:
    """The CLI takes most of a second to import; a Ctrl-C then was a traceback from inside
    some import. The Ctrl-C is made to land there: KeyboardInterrupt at rich's import, as
    Python raises it for SIGINT at whatever line runs."""
    land_in_import = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def ctrl_c(name, *args, **kwargs):\n"
        "    if name.startswith('rich'):\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = ctrl_c\n"
        "from routing_points.entry import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", land_in_import, "points", "list", "0032"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (130, "interrupted\n")
    assert list(tmp_path.iterdir()) == []


def test_a_redis_url_that_reaches_no_redis_is_one_line(tmp_path: Path) -> None:
    """The API's own port typed into --redis, an option redis-py cannot read: tracebacks."""
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, web)
        folder = tmp_path / "here"
        folder.mkdir()
        for url, reason in (
            (f"redis://127.0.0.1:{port}/0", "what answers there is not Redis (Protocol error"),
            ("redis://127.0.0.1:6379/0?db=abc", "Invalid value for 'db' in connection URL."),
        ):
            result = cli("serve", "--redis", url, "--port", str(free_port()), cwd=folder)
            assert one_line_error(result).startswith(f"Error: cannot use Redis at {url}: {reason}")
            assert list(folder.iterdir()) == []
    finally:
        web.terminate()
        web.wait(timeout=10)


def test_a_first_poll_that_fails_leaves_no_history_behind(tmp_path: Path) -> None:
    """As `mirror --once` removes a store it made for a recording that failed."""
    result = watch_once(tmp_path)  # nobody serves there
    assert result.returncode == 5
    assert one_line_error(result).startswith("Error: TransportError: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["get", "--server", "0032", "--token", "t", "--timezone", "Bogota"], "--timezone"),
        (["watch", "--server", "0032", "--token", "t", "--timezone", "Bogota"], "--timezone"),
        (["history", "--since", "2026-13-01"], "--since"),
        (["mirror", "--once", "--upstream-server", "32"], "--upstream-server"),
    ],
)
def test_a_bad_value_names_its_option(tmp_path: Path, command: list[str], named: str) -> None:
    """It said only "Invalid value:", leaving the user to guess which."""
    (tmp_path / "routing-points-history.db").touch()  # history reads an existing store
    env = {"ROUTING_POINTS_UPSTREAM_TOKEN": "t"}
    result = cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert one_line_error(result).startswith(f"Error: Invalid value for {named}: ")


def test_https_to_a_plain_http_server_says_to_use_http(tmp_path: Path) -> None:
    """It said "is the server running there?" of a server that was running."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        result = cli(
            "get", "--server", "0032", "--base-url", url, "--retries", "0",
            env={"ROUTING_POINTS_TOKEN": "abc"}, cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 5
    line = one_line_error(result)
    assert line.endswith("(the server there speaks plain HTTP: give --base-url with http://)")


def test_the_log_level_is_taken_in_any_case() -> None:
    """ROUTING_POINTS_LOG_LEVEL=debug was refused: Python's own levels are upper case."""
    assert Settings(log_level="debug").log_level == "DEBUG"  # type: ignore[arg-type]


def test_a_group_named_alone_says_which_commands_it_has(tmp_path: Path) -> None:
    """It printed "Error: Usage: ..." and the group's whole help as its one line."""
    line = one_line_error(cli("tokens", cwd=tmp_path))
    commands = "add, expire, list, list-platform, revoke, revoke-platform, rotate"
    # The command's path is this interpreter's `python -m routing_points` here.
    assert f" tokens needs a command: {commands} (see: " in line
    assert line.endswith(" tokens --help)")


def test_serving_a_store_without_an_operation_says_how_to_add_one(tmp_path: Path) -> None:
    """A bare `serve` made an empty routing-points.db and said nothing: every token 403."""
    server = ServerProcess("serve", port=free_port(), cwd=tmp_path).wait_ready()
    assert server.stop()
    assert server.logged.splitlines()[0] == (
        "the store holds no operation yet: add one with routing-points operations add 0032 "
        "--name NAME --licenses 1 --database sqlite:///routing-points.db"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["get", "--server", "0032", "--token", "t", "--routing", "abc"],
        ["tokens", "revoke", "abc"],
        ["operations", "add", "0033", "--name", "x", "--licenses", "abc"],
    ],
)
def test_a_number_that_is_not_one_is_called_a_whole_number(
    tmp_path: Path, command: list[str]
) -> None:
    """click said "'abc' is not a valid integer range", of --routing, an id or a count."""
    line = one_line_error(cli(*command, cwd=tmp_path))
    assert "'abc' is not a valid whole number." in line
