"""The admin CLI: every command, and every bad input refused with one line and no write."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from routing_points.cli import main
from routing_points.store import points as point_store
from routing_points.store import tenants

Invoke = Callable[..., Result]


@pytest.fixture
def run(database_url: str, engine: Engine) -> Invoke:
    """The CLI against a store that exists (only migrate, serve and demo create one)."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, [*args, "--database", database_url], catch_exceptions=False)

    return invoke


def assert_refused(result: Result, fragment: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_migrate_is_idempotent(run: Invoke) -> None:
    for _ in range(2):
        result = run("migrate")
        assert result.exit_code == 0
        assert "up to date" in result.stdout


def test_operations_add_and_list(run: Invoke) -> None:
    added = run(
        "operations",
        "add",
        "0032",
        "--name",
        "Acme",
        "--licenses",
        "3",
        "--timezone",
        "America/Bogota",
    )
    assert added.exit_code == 0, added.stderr
    listed = run("operations", "list")
    assert "0032" in listed.stdout
    assert "Acme" in listed.stdout
    assert "3000" in listed.stdout
    assert "America/Bogota" in listed.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["032"], "exactly 4 digits"),
        (["00320"], "exactly 4 digits"),
        (["abcd"], "exactly 4 digits"),
        (["0032", "--licenses", "0"], "at least 1"),
        (["0032", "--timezone", "Mars/Olympus"], "not a known IANA time zone"),
    ],
)
def test_operations_add_refuses_bad_input(
    run: Invoke, engine: Engine, args: list[str], fragment: str
) -> None:
    base = {"--name": "Acme", "--licenses": "1"}
    server, *rest = args
    for option, value in zip(rest[::2], rest[1::2], strict=True):
        base[option] = value
    flat = [part for option, value in base.items() for part in (option, value)]
    result = run("operations", "add", server, *flat)
    assert_refused(result, fragment)
    assert tenants.list_operations(engine) == []


def test_duplicate_operation_is_refused(run: Invoke, engine: Engine) -> None:
    run("operations", "add", "0032", "--name", "Acme", "--licenses", "1")
    result = run("operations", "add", "0032", "--name", "Other", "--licenses", "2")
    assert_refused(result, "already exists")
    assert [op.name for op in tenants.list_operations(engine)] == ["Acme"]


def test_tokens_add_list_revoke(run: Invoke, engine: Engine) -> None:
    run("operations", "add", "0032", "--name", "Acme", "--licenses", "1")
    added = run("tokens", "add", "0032", "--description", "BI", "--daily-limit", "50")
    assert added.exit_code == 0
    secret = added.stdout.splitlines()[-1]
    assert len(secret) >= 40
    assert " " not in secret
    listed = run("tokens", "list", "0032")
    assert "BI" in listed.stdout
    assert "50" in listed.stdout
    assert secret not in listed.stdout
    token = tenants.list_tokens(engine, "0032")[0]
    assert token.revoked_at is None
    revoked = run("tokens", "revoke", str(token.id))
    assert revoked.exit_code == 0
    assert tenants.list_tokens(engine, "0032")[0].revoked_at is not None
    assert_refused(run("tokens", "revoke", str(token.id)), "already revoked")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["tokens", "add", "0099"], "operation 0099 does not exist"),
        (["tokens", "add", "0032", "--daily-limit", "0"], "at least 1"),
        (["tokens", "list", "0099"], "operation 0099 does not exist"),
        (["tokens", "revoke", "999"], "token 999 does not exist"),
        (["points", "list", "0099"], "operation 0099 does not exist"),
        (["points", "set", "0032", "5", "--ivr", "yes"], "routing point 5 does not exist"),
        (["points", "set", "0032", "5"], "nothing to change"),
        # An empty log for an operation that does not exist; CSV written into points.xml.
        (["audit", "--server", "0099"], "operation 0099 does not exist"),
        (["points", "export", "0032", "--output", "p.xml"], "p.xml is neither .csv nor .json"),
    ],
)
def test_admin_commands_refuse_unknowns(
    run: Invoke, engine: Engine, args: list[str], fragment: str
) -> None:
    run("operations", "add", "0032", "--name", "Acme", "--licenses", "1")
    assert_refused(run(*args), fragment)
    assert tenants.list_tokens(engine, "0032") == []


CSV = """rp_id,rp_name,ivr_active,chat_active,interaction_active,crm_active,last_use
101,Sales line,yes,no,yes,no,2026-11-20 14:03:11
102,Support chat,no,yes,yes,yes,
"""


@pytest.fixture
def acme(run: Invoke) -> None:
    run(
        "operations",
        "add",
        "0032",
        "--name",
        "Acme",
        "--licenses",
        "1",
        "--timezone",
        "America/Bogota",
    )


@pytest.mark.usefixtures("acme")
def test_points_import_csv_list_and_set(run: Invoke, tmp_path: Path, engine: Engine) -> None:
    file = tmp_path / "points.csv"
    file.write_text(CSV)
    imported = run("points", "import", "0032", str(file))
    assert imported.exit_code == 0, imported.stderr
    assert "2 routing points imported" in imported.stdout
    listed = run("points", "list", "0032")
    assert "Sales line" in listed.stdout
    assert "2026-11-20 14:03:11" in listed.stdout
    version = tenants.get_operation(engine, "0032").version
    changed = run("points", "set", "0032", "101", "--ivr", "no", "--name", "Sales")
    assert changed.exit_code == 0
    _, rows = point_store.list_points(engine, "0032")
    assert (rows[0].rp_name, rows[0].ivr_active) == ("Sales", False)
    assert tenants.get_operation(engine, "0032").version == version + 1
    # The same change again writes nothing: clients' ETags stay.
    again = run("points", "set", "0032", "101", "--ivr", "no", "--name", "Sales")
    assert again.exit_code == 0
    assert again.stdout == "routing point 101 of operation 0032 already has these values\n"
    assert tenants.get_operation(engine, "0032").version == version + 1


@pytest.mark.usefixtures("acme")
def test_points_import_json_and_api_answers(run: Invoke, tmp_path: Path, engine: Engine) -> None:
    file = tmp_path / "points.json"
    file.write_text(json.dumps([{"rp_id": "7", "rp_name": "Seven", "ivr_active": "yes"}]))
    assert run("points", "import", "0032", str(file)).exit_code == 0
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"code": 200, "data": [{"rp_id": "7", "chat_active": "yes"}]}))
    assert run("points", "import", "0032", str(answer)).exit_code == 0
    _, rows = point_store.list_points(engine, "0032")
    # The second file left out rp_name and ivr_active: they kept their values.
    assert (rows[0].rp_name, rows[0].ivr_active, rows[0].chat_active) == ("Seven", True, True)


BAD_FILES = [
    ("bad.csv", CSV + "103,Third,maybe,no,no,no,\n", "line 4: ivr_active: 'maybe' is not yes"),
    ("bad.csv", CSV + "x,Third,no,no,no,no,\n", "line 4: rp_id: 'x' is not a positive integer"),
    ("bad.csv", CSV + "0,Zero,no,no,no,no,\n", "line 4: rp_id"),
    ("bad.csv", CSV + "104,,no,no,no,no,\n", "line 4: rp_name"),
    ("bad.csv", CSV + "105," + "n" * 256 + ",no,no,no,no,\n", "line 4: rp_name"),
    ("bad.csv", CSV + "106,Late,no,no,no,no,20261120\n", "line 4: last_use"),
    (
        "bad.csv",
        CSV + "101,Again,no,no,no,no,\n",
        "line 4: rp_id 101 appears twice (first at line 2)",
    ),
    ("bad.csv", CSV + "107,Short,no\n", "line 4: has a different number of fields"),
    ("bad.csv", "name,flag\nx,y\n", "header row must name rp_id"),
    (
        "bad.csv",
        "rp_id,rp_name,ivr_active,ivr_active\n1,x,yes,no\n",
        "header row names ivr_active more than once",
    ),
    ("bad.json", '[{"rp_id": "1", "rp_name": "x"}, {"rp_id": "2"}]', "record 2: rp_id 2 is new"),
    ("bad.json", '[{"rp_id": "1", "rp_name": "x", "colour": "red"}]', "record 1: colour"),
    ("bad.json", '[{"rp_id": "1", "rp_name": "x"},', "malformed JSON"),
    ("bad.json", "[1, 2]", "record 1: expected an object"),
    ("empty.csv", "", "holds no records"),
    # A quote left open at the end was imported, a line break in the name.
    ("open.csv", CSV + '405,"unterminated\n', "line 4: a quoted field is not closed"),
    ("odd.csv", CSV + '406,"ok" x,no,no,no,no,\n', "line 4: a quoted field is followed"),
    # The csv module's limit, and JSON nested past repr's: both were tracebacks.
    ("long.csv", "rp_id,rp_name\n1," + "x" * 200_000 + "\n", "line 2: a field is longer"),
    (
        "deep.json",
        '[{"rp_id": ' + "[" * 1000 + "1" + "]" * 1000 + ', "rp_name": "x"}]',
        "record 1: rp_id: a deeply nested value is not a positive integer",
    ),
]


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(("name", "content", "fragment"), BAD_FILES)
def test_points_import_refuses_a_bad_file_whole(
    run: Invoke, tmp_path: Path, engine: Engine, name: str, content: str, fragment: str
) -> None:
    file = tmp_path / name
    file.write_text(content)
    for dry_run in ([], ["--dry-run"]):
        result = run("points", "import", "0032", str(file), *dry_run)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: {file}: ")
        assert fragment in result.stderr
    _, rows = point_store.list_points(engine, "0032")
    assert rows == []
    assert tenants.get_operation(engine, "0032").version == 1


@pytest.mark.usefixtures("acme")
def test_points_import_lists_every_bad_row_up_to_a_cap(
    run: Invoke, tmp_path: Path, engine: Engine
) -> None:
    file = tmp_path / "points.csv"
    good = ["101,Fine,yes,no,no,no,"]
    bad = [f"{200 + i},Bad {i},maybe,no,no,no," for i in range(25)]
    file.write_text(CSV.splitlines()[0] + "\n" + "\n".join(good + bad) + "\n")
    result = run("points", "import", "0032", str(file))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: {file}: 25 problems, nothing was imported:"
    # Lines as an editor numbers them: the header is line 1, the good row line 2.
    assert lines[1] == "  line 3: ivr_active: 'maybe' is not yes or no"
    assert lines[20] == "  line 22: ivr_active: 'maybe' is not yes or no"
    assert lines[21:] == ["  and 5 more"]
    assert point_store.count_points(engine, "0032") == 0


@pytest.mark.usefixtures("acme")
def test_points_import_dry_run_writes_nothing(run: Invoke, tmp_path: Path, engine: Engine) -> None:
    file = tmp_path / "points.csv"
    file.write_text(CSV)
    assert run("points", "import", "0032", str(file)).exit_code == 0
    file.write_text(CSV + "103,Third,no,no,no,no,\n")
    version = tenants.get_operation(engine, "0032").version
    result = run("points", "import", "0032", str(file), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert (
        "3 routing points would be imported into operation 0032 (1 new, 0 updated, 2 unchanged)"
        in (result.stdout)
    )
    assert point_store.count_points(engine, "0032") == 2
    assert tenants.get_operation(engine, "0032").version == version


@pytest.mark.usefixtures("acme")
def test_points_import_of_what_is_stored_writes_nothing(
    run: Invoke, tmp_path: Path, engine: Engine
) -> None:
    file = tmp_path / "points.csv"
    file.write_text(CSV)
    assert run("points", "import", "0032", str(file)).exit_code == 0
    version = tenants.get_operation(engine, "0032").version
    again = run("points", "import", "0032", str(file))
    assert again.exit_code == 0, again.stderr
    assert again.stdout.strip() == (
        f"{file}: operation 0032 already has 2 routing points exactly as in the file; "
        "nothing was written"
    )
    assert tenants.get_operation(engine, "0032").version == version  # no client downloads again
    file.write_text(CSV.replace("Sales line", "Sales line 2") + "103,Third,no,no,no,no,\n")
    changed = run("points", "import", "0032", str(file))
    assert changed.stdout.strip() == (
        "3 routing points imported into operation 0032 (1 new, 1 updated, 1 unchanged)"
    )


@pytest.mark.usefixtures("acme")
def test_points_import_of_a_missing_file(run: Invoke, tmp_path: Path) -> None:
    result = run("points", "import", "0032", str(tmp_path / "nope.csv"))
    assert_refused(result, "cannot be read")


@pytest.mark.usefixtures("acme")
def test_points_import_100k_records(run: Invoke, tmp_path: Path, engine: Engine) -> None:
    file = tmp_path / "big.csv"
    lines = ["rp_id,rp_name,ivr_active,chat_active,interaction_active,crm_active,last_use"]
    lines += [f"{i},Point {i},yes,no,yes,no,2026-11-20 10:00:00" for i in range(1, 100_001)]
    file.write_text("\n".join(lines) + "\n")
    result = run("points", "import", "0032", str(file))
    assert result.exit_code == 0, result.stderr
    assert point_store.count_points(engine, "0032") == 100_000


@pytest.mark.usefixtures("acme")
def test_list_commands_print_one_json_document(run: Invoke, tmp_path: Path) -> None:
    file = tmp_path / "points.csv"
    file.write_text(CSV)
    assert run("points", "import", "0032", str(file)).exit_code == 0
    assert run("tokens", "add", "0032", "--description", "BI").exit_code == 0
    operations = json.loads(run("operations", "list", "--json").stdout)
    assert operations == [
        {
            "server": "0032",
            "name": "Acme",
            "licenses": 1,
            "daily_budget": 1000,
            "timezone": "America/Bogota",
        }
    ]
    (token,) = json.loads(run("tokens", "list", "0032", "--json").stdout)
    assert (token["id"], token["description"], token["scope"]) == (1, "BI", "read")
    assert token["revoked_at"] is None
    assert token["created_at"].endswith("Z")
    points = json.loads(run("points", "list", "0032", "--json").stdout)
    assert points[0] == {
        "rp_id": "101",
        "rp_name": "Sales line",
        "ivr_active": "yes",
        "chat_active": "no",
        "interaction_active": "yes",
        "crm_active": "no",
        "last_use": "2026-11-20 14:03:11",
    }


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(("output_format", "name"), [("csv", "out.csv"), ("json", "out.json")])
def test_points_export_then_import_is_a_round_trip(
    run: Invoke, tmp_path: Path, engine: Engine, output_format: str, name: str
) -> None:
    file = tmp_path / "points.csv"
    file.write_text(CSV)
    assert run("points", "import", "0032", str(file)).exit_code == 0
    _, before = point_store.list_points(engine, "0032")
    output = tmp_path / name
    exported = run("points", "export", "0032", "--format", output_format, "--output", str(output))
    assert exported.exit_code == 0, exported.stderr
    if output_format == "csv":
        assert output.read_text() == CSV
    to_stdout = run("points", "export", "0032", "--format", output_format)
    assert to_stdout.stdout == output.read_text()
    assert run("points", "delete", "0032", "101", "102").exit_code == 0
    assert point_store.count_points(engine, "0032") == 0
    assert run("points", "import", "0032", str(output)).exit_code == 0
    _, after = point_store.list_points(engine, "0032")
    assert after == before


@pytest.mark.usefixtures("acme")
def test_points_delete_is_all_or_nothing(run: Invoke, tmp_path: Path, engine: Engine) -> None:
    file = tmp_path / "points.csv"
    file.write_text(CSV)
    assert run("points", "import", "0032", str(file)).exit_code == 0
    version = tenants.get_operation(engine, "0032").version
    assert_refused(run("points", "delete", "0032", "101", "999"), "999 do not exist")
    assert point_store.count_points(engine, "0032") == 2
    assert tenants.get_operation(engine, "0032").version == version
    deleted = run("points", "delete", "0032", "102")
    assert deleted.stdout == "1 routing point deleted from operation 0032\n"
    assert tenants.get_operation(engine, "0032").version == version + 1


@pytest.mark.usefixtures("acme")
def test_operations_set(run: Invoke, engine: Engine) -> None:
    version = tenants.get_operation(engine, "0032").version
    changed = run("operations", "set", "0032", "--name", "Acme Ltd", "--licenses", "5")
    assert changed.exit_code == 0, changed.stderr
    operation = tenants.get_operation(engine, "0032")
    assert (operation.name, operation.licenses, operation.timezone) == (
        "Acme Ltd",
        5,
        "America/Bogota",
    )
    assert operation.version == version  # neither is in any answer: the ETags stay
    assert run("operations", "set", "0032", "--timezone", "UTC").exit_code == 0
    assert tenants.get_operation(engine, "0032").version == version + 1
    assert_refused(run("operations", "set", "0032"), "nothing to change")
    assert_refused(run("operations", "set", "0032", "--timezone", "Mars/x"), "not a known IANA")
    assert_refused(run("operations", "set", "0032", "--licenses", "0"), "at least 1")
    assert_refused(run("operations", "set", "0099", "--licenses", "2"), "0099 does not exist")


@pytest.mark.usefixtures("acme")
def test_tokens_rotate_prints_a_new_secret_once(run: Invoke, engine: Engine) -> None:
    assert run("tokens", "add", "0032").exit_code == 0
    rotated = run("tokens", "rotate", "1", "--grace", "30m")
    assert rotated.exit_code == 0, rotated.stderr
    first, secret = rotated.stdout.splitlines()
    assert first == "token 1 rotated: the old secret works for 1800 s more; the new secret follows:"
    assert len(secret) == 43
    (token,) = json.loads(run("tokens", "list", "0032", "--json").stdout)
    assert token["previous_secret_valid_until"] is not None
    assert_refused(run("tokens", "rotate", "1", "--grace", "soon"), "not a duration")
    assert_refused(run("tokens", "rotate", "9"), "token 9 does not exist")
    assert run("tokens", "revoke", "1").exit_code == 0
    assert_refused(run("tokens", "rotate", "1"), "token 1 is revoked")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", command))
    return found


@pytest.mark.parametrize("name", [name for name, _command in _commands(main)])
def test_every_command_shows_an_example(name: str) -> None:
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0
    _, examples = result.stdout.split("\n  Examples:\n")
    assert f"    routing-points {name} " in examples


HUGE = "99999999999999999999"  # past any integer the store keeps


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["tokens", "add", "0032", "--daily-limit", HUGE], "daily limit: must be at most"),
        (["operations", "set", "0032", "--licenses", HUGE], "licenses: must be at most 100000"),
        (
            ["operations", "add", "0044", "--name", "B", "--licenses", HUGE, "--timezone", "UTC"],
            "licenses: must be at most 100000",
        ),
        (["points", "set", "0032", HUGE, "--ivr", "no"], f"{HUGE} is not in the range"),
        (["points", "delete", "0032", HUGE], f"{HUGE} is not in the range"),
        (["tokens", "revoke", HUGE], f"{HUGE} is not in the range"),
    ],
)
def test_a_number_too_large_for_the_store_is_one_line(
    run: Invoke, command: list[str], said: str
) -> None:
    """It was a traceback ending in SQLite's OverflowError."""
    assert_refused(run(*command), said)


@pytest.mark.usefixtures("acme")
def test_a_table_sent_to_a_pipe_is_not_cut_to_80_columns(
    run: Invoke, tmp_path: Path, engine: Engine
) -> None:
    """rich cut every value short ("Sales li…") when the output was not a terminal."""
    name = "Customer care line for the northern region on weekends and public holidays"
    file = tmp_path / "points.csv"
    file.write_text(CSV.replace("Sales line", name))
    assert run("points", "import", "0032", str(file)).exit_code == 0
    listed = run("points", "list", "0032")  # click's runner: no terminal, as a pipe
    assert listed.exit_code == 0
    assert name in listed.stdout
    assert "2026-11-20 14:03:11" in listed.stdout


@pytest.mark.usefixtures("acme")
def test_a_mistyped_csv_header_is_named_on_line_1(run: Invoke, tmp_path: Path) -> None:
    """It was blamed on line 2, the first record, as if the record were wrong."""
    file = tmp_path / "points.csv"
    file.write_text("rp_id,rp_nam\n1,Sales\n2,Support\n")
    assert_refused(
        run("points", "import", "0032", str(file)),
        f"{file}: line 1: 'rp_nam' is not a routing point field",
    )
    # Every unknown column at once: fixing one must not reveal the next.
    file.write_text("rp_id,rp_nam,ivr\n1,Sales,yes\n")
    assert_refused(
        run("points", "import", "0032", str(file)),
        f"{file}: line 1: 'rp_nam', 'ivr' are not routing point fields",
    )


@pytest.mark.usefixtures("acme")
def test_stored_names_are_shown_as_text_in_every_table(
    run: Invoke, tmp_path: Path, engine: Engine
) -> None:
    """Rich read them as markup: "[/]" crashed `points list`, `tokens list` and `audit` with
    a traceback, "[eu]" vanished; and an escape sequence reached the reader's terminal."""
    file = tmp_path / "points.csv"
    file.write_text(CSV)
    assert run("points", "import", "0032", str(file)).exit_code == 0
    names = {101: "Closing [/] tag", 102: "Sales [eu] desk"}
    for rp_id, name in names.items():
        assert run("points", "set", "0032", str(rp_id), "--name", name).exit_code == 0
    point_store.set_point(engine, "0032", 101, {"rp_name": "Clear\x1b[2J\x07 [/]"})
    assert run("tokens", "add", "0032", "--description", "ci [/] bot").exit_code == 0
    listed = run("points", "list", "0032")
    assert listed.exit_code == 0, listed.stderr
    assert "Sales [eu] desk" in listed.stdout
    assert "Clear\\x1b[2J\\x07 [/]" in listed.stdout
    assert "\x1b" not in listed.stdout
    assert "\x07" not in listed.stdout
    tokens = run("tokens", "list", "0032")
    assert tokens.exit_code == 0, tokens.stderr
    assert "ci [/] bot" in tokens.stdout
    logged = run("audit", "--server", "0032")
    assert logged.exit_code == 0, logged.stderr
    assert "Closing [/] tag" in logged.stdout
