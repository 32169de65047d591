"""`get` and `token-info` end to end: a real server, the real command, every format."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from routing_points.cli import main
from routing_points.cli.consume import relative_age
from tests.support.processes import cli
from tests.support.seed import Tenant, add_tenant
from tests.support.servers import LiveServer
from tests.support.services import free_port
from tests.support.wire import FIELDS, SALES_LINE

pytestmark = pytest.mark.dated


def test_get_json_is_exactly_the_records_as_sent(live: LiveServer, tenant: Tenant) -> None:
    result = cli(
        "get",
        "--server",
        "0032",
        "--token",
        tenant.token,
        "--base-url",
        live.url,
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["rp_id"] for r in records] == ["101", "102", "1000"]
    assert records[0] == SALES_LINE


def test_get_csv_has_a_header_in_contract_order(live: LiveServer, tenant: Tenant) -> None:
    result = cli(
        "get",
        "--server",
        "0032",
        "--base-url",
        live.url,
        "--format",
        "csv",
        env={"ROUTING_POINTS_TOKEN": tenant.token},
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == FIELDS
    assert rows[1] == ["101", "Sales line", "yes", "no", "yes", "no", "2026-11-20 14:03:11"]
    assert len(rows) == 4


def get_table(live: LiveServer, tenant: Tenant, routing: str) -> subprocess.CompletedProcess[str]:
    """`get` of one routing point of operation 0032, as a table."""
    return cli(
        "get",
        "--server",
        "0032",
        "--token",
        tenant.token,
        "--base-url",
        live.url,
        "--routing",
        routing,
        env={"COLUMNS": "160"},
    )


def test_get_table(live: LiveServer, tenant: Tenant) -> None:
    result = get_table(live, tenant, "102")
    assert result.returncode == 0, result.stderr
    assert "Support chat" in result.stdout
    assert "never" in result.stdout
    assert "Sales line" not in result.stdout


def test_get_table_of_no_point_says_so(live: LiveServer, tenant: Tenant) -> None:
    """An empty table alone looked like a display fault; it is no error, so exit 0."""
    result = get_table(live, tenant, "999")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "operation 0032 has no routing point with rp_id 999"


def test_token_info_formats(live: LiveServer, tenant: Tenant) -> None:
    as_json = cli(
        "token-info",
        "--server",
        "0032",
        "--token",
        tenant.token,
        "--base-url",
        live.url,
        "--format",
        "json",
    )
    assert json.loads(as_json.stdout) == {
        "description": "token of 0032",
        "token_limit": "1000",
        "token_use_today": "1",
        "all_token_today": "1",
        "available_consumption_options": "999",
    }
    as_csv = cli(
        "token-info",
        "--server",
        "0032",
        "--token",
        tenant.token,
        "--base-url",
        live.url,
        "--format",
        "csv",
    )
    assert as_csv.stdout.splitlines()[0] == (
        "description,token_limit,token_use_today,all_token_today,available_consumption_options"
    )
    table = cli("token-info", "--server", "0032", "--token", tenant.token, "--base-url", live.url)
    assert "available_consumption_options" in table.stdout


def test_exit_codes_tell_failures_apart(engine: Engine, live: LiveServer, tenant: Tenant) -> None:
    runner = CliRunner()

    def get(token: str, base_url: str, server: str = "0032") -> tuple[int, str]:
        result = runner.invoke(
            main, ["get", "--server", server, "--token", token, "--base-url", base_url]
        )
        return result.exit_code, result.stderr

    code, err = get("wrong", live.url)
    assert code == 3
    assert err.startswith("Error: InvalidToken: PLEASE VALIDATE TOKEN")
    assert "check it and the server" in err
    assert len(err.strip().splitlines()) == 1
    code, err = get(tenant.token, live.url + "/api/v2")  # the path given twice: a 404
    assert err.startswith("Error: ContractError: THE RESOURCE YOU ARE LOOKING FOR DOES NOT EXIST")
    assert "the client adds /api/v2/information.php" in err
    nobody = f"http://127.0.0.1:{free_port()}"
    code, err = get(tenant.token, nobody)
    assert code == 5
    assert "ConnectError" in err
    assert f"{nobody}: " in err  # the address that could not be reached
    assert "--base-url" in err
    spent = add_tenant(engine, "0044", daily_limit=1)
    assert get(spent.token, live.url, "0044")[0] == 0
    code, err = get(spent.token, live.url, "0044")
    assert code == 4
    assert "TOKEN LIMIT EXCEEDED (the budget resets at" in err


def test_a_missing_token_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["get", "--server", "0032"], env={})
    assert result.exit_code == 2
    assert "--token" in result.stderr


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (5, "just now"),
        (120, "2 min ago"),
        (7200, "2 h ago"),
        (86_400, "1 day ago"),
        (3 * 86_400 + 5, "3 days ago"),
        (-60, "in the future"),
    ],
)
def test_relative_age(seconds: int, expected: str) -> None:
    now = datetime(2026, 11, 27, 12, 0, 0)
    assert relative_age(now - timedelta(seconds=seconds), now) == expected
    assert relative_age(None, now) == "never"
