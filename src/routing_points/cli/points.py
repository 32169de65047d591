"""`points`: an operation's routing points, from the shell.

Import and export share one format (CSV with the contract's header, or JSON records), so
what `points export` writes, `points import` reads back unchanged.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
from pathlib import Path

import click
import orjson

from routing_points.cli.common import (
    cli_audit,
    database_option,
    json_option,
    open_store,
    print_json,
    store_errors,
)
from routing_points.cli.help import (
    STORED_ID,
    CommandGroup,
    DataTable,
    counted,
    example,
    print_table,
)
from routing_points.server.render import stored_records
from routing_points.store import points as point_store
from routing_points.store.importer import check_import, problem_report, read_point_file
from routing_points.store.records import POINT_FIELDS

YES_NO = click.Choice(["yes", "no"], case_sensitive=False)


def _records(database_url: str | None, server: str) -> list[dict[str, str]]:
    """The operation's points as the API answers them (last_use in its local time)."""
    operation, rows = point_store.list_points(open_store(database_url), server)
    return stored_records(operation.timezone, rows)


@click.group(cls=CommandGroup)
def points() -> None:
    """Routing points of an operation."""


@points.command(
    "import",
    epilog=example(
        "routing-points points import 0032 points.csv --dry-run   # check, write nothing",
        "routing-points points import 0032 points.csv",
        "routing-points points import 0032 answer.json            # an API answer works too",
    ),
)
@click.argument("server")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check every record and say what would change.")
@database_option
@store_errors
def points_import(server: str, file: Path, dry_run: bool, database_url: str | None) -> None:
    """Upsert routing points by rp_id from a CSV or JSON file: all of them, or none.

    Every bad record is listed (the first 20) with its CSV line or JSON position, and
    then nothing is written.
    """
    engine = open_store(database_url)
    found = read_point_file(file)
    check = check_import(engine, server, found)
    if check.problems:
        count = len(check.problems)
        lines = "\n".join(f"  {line}" for line in problem_report(check.problems))
        noun = "problem" if count == 1 else "problems"
        raise click.ClickException(f"{file}: {count} {noun}, nothing was imported:\n{lines}")
    summary = check.summary()
    if dry_run:
        click.echo(
            f"{file}: {counted(len(found.records), 'routing point')} would be imported into "
            f"operation {server} ({summary}); nothing was written (--dry-run)"
        )
        return
    if not check.new and not check.updated:
        # Nothing to write (the store would skip every record too), so nothing to audit.
        click.echo(
            f"{file}: operation {server} already has {counted(check.unchanged, 'routing point')} "
            "exactly as in the file; nothing was written"
        )
        return
    result = point_store.upsert_points(engine, server, found.records, describe=f"{file}: record")
    detail = {"file": str(file), "upserted": result.upserted, "unchanged": result.unchanged}
    cli_audit(engine, "point.import", server, detail)
    imported = counted(result.upserted, "routing point")
    click.echo(f"{imported} imported into operation {server} ({summary})")


@points.command(
    "export",
    epilog=example(
        "routing-points points export 0032 --output points.csv",
        "routing-points points export 0032 --format json > points.json",
    ),
)
@click.argument("server")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Default: from --output's extension, else csv.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write this file (whole, or not at all) instead of stdout.",
)
@database_option
@store_errors
def points_export(
    server: str, output_format: str | None, output: Path | None, database_url: str | None
) -> None:
    """Write an operation's routing points in the format `points import` reads."""
    if output_format is None:
        suffix = "" if output is None else output.suffix.lower()
        if output is not None and suffix not in ("", ".csv", ".json"):
            # It wrote CSV into points.xml without a word.
            raise click.BadParameter(
                f"{output.name} is neither .csv nor .json: give --format csv or json",
                param_hint="--output",
            )
        output_format = "json" if suffix == ".json" else "csv"
    found = _records(database_url, server)
    if output_format == "json":
        text = orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(POINT_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(found)
        text = buffer.getvalue()
    if output is None:
        sys.stdout.write(text)
        return
    _write_whole(output, text)
    click.echo(f"{counted(len(found), 'routing point')} of operation {server} written to {output}")


def _write_whole(path: Path, text: str) -> None:
    """Write next to the target, then rename: a reader never sees half a file."""
    if not path.parent.resolve().is_dir():
        raise click.ClickException(f"cannot write {path}: the folder {path.parent} does not exist")
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None


@points.command(
    "list",
    epilog=example("routing-points points list 0032", "routing-points points list 0032 --json"),
)
@click.argument("server")
@json_option
@database_option
@store_errors
def points_list(server: str, as_json: bool, database_url: str | None) -> None:
    """List an operation's routing points."""
    found = _records(database_url, server)
    if as_json:
        print_json(found)
        return
    table = DataTable("rp_id", "rp_name", "ivr", "chat", "interaction", "crm", "last_use")
    for record in found:
        table.add_row(*record.values())
    print_table(table)


@points.command(
    "set",
    epilog=example(
        "routing-points points set 0032 101 --ivr no",
        'routing-points points set 0032 101 --name "Sales line (new)" --crm yes',
    ),
)
@click.argument("server")
@click.argument("rp_id", type=STORED_ID)
@click.option("--ivr", type=YES_NO)
@click.option("--chat", type=YES_NO)
@click.option("--interaction", type=YES_NO)
@click.option("--crm", type=YES_NO)
@click.option("--name", help="A new rp_name.")
@database_option
@store_errors
def points_set(
    server: str,
    rp_id: int,
    ivr: str | None,
    chat: str | None,
    interaction: str | None,
    crm: str | None,
    name: str | None,
    database_url: str | None,
) -> None:
    """Change one routing point's flags or name."""
    given = {
        "ivr_active": ivr,
        "chat_active": chat,
        "interaction_active": interaction,
        "crm_active": crm,
        "rp_name": name,
    }
    changes = {field: value for field, value in given.items() if value is not None}
    engine = open_store(database_url)
    if not point_store.set_point(engine, server, rp_id, changes):
        click.echo(f"routing point {rp_id} of operation {server} already has these values")
        return
    cli_audit(engine, "point.update", server, {"rp_id": rp_id, "changes": changes})
    click.echo(f"routing point {rp_id} of operation {server} updated")


@points.command(
    "delete",
    epilog=example(
        "routing-points points delete 0032 101", "routing-points points delete 0032 101 102 103"
    ),
)
@click.argument("server")
@click.argument("rp_ids", metavar="RP_ID...", type=STORED_ID, nargs=-1, required=True)
@database_option
@store_errors
def points_delete(server: str, rp_ids: tuple[int, ...], database_url: str | None) -> None:
    """Delete routing points: all of them, or none if any does not exist."""
    engine = open_store(database_url)
    deleted = point_store.delete_points(engine, server, rp_ids)
    cli_audit(engine, "point.delete", server, {"rp_ids": list(rp_ids)})
    click.echo(f"{counted(deleted, 'routing point')} deleted from operation {server}")
