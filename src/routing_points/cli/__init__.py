"""`routing-points`: serve the API, administer its store, and consume it.

Every failure is one clear line on stderr and a non-zero exit; admin commands never
leave a half-written store behind.

The client commands (`get`, `token-info`, `watch`, `history`) need only the plain install.
The server and admin commands are imported when invoked, so that without the `server`
extra they answer one line naming it instead of failing at import.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from routing_points import __version__
from routing_points.cli.consume import get, token_info
from routing_points.cli.help import CommandGroup
from routing_points.cli.watch import history_command, watch
from routing_points.entry import interrupted

# Command name -> where it is defined (`module:attribute`), imported only when used.
SERVER_COMMANDS = {
    "serve": "routing_points.cli.serve:serve",
    "demo": "routing_points.cli.serve:demo",
    "migrate": "routing_points.cli.serve:migrate",
    "operations": "routing_points.cli.tenants:operations",
    "tokens": "routing_points.cli.tenants:tokens",
    "points": "routing_points.cli.points:points",
    "mirror": "routing_points.cli.mirror:mirror",
    "allowlist": "routing_points.cli.access:allowlist",
    "audit": "routing_points.cli.access:audit_command",
}
# Top-level modules only the `server` extra installs.
SERVER_ONLY = {"starlette", "uvicorn", "redis", "pydantic_settings", "pydantic"}
SERVER_ONLY |= {"anyio", "asyncpg", "psycopg", "uvloop", "httptools"}
INSTALL_SERVER = "pip install 'routing-points[server]'"


class UsageMistake(click.ClickException):
    """A usage error as one line (click's own adds the usage and a hint: three lines)."""

    exit_code = 2


def needs_server_extra(name: str, missing: str) -> click.Command:
    """A stand-in that names the extra, whatever arguments it is given."""

    def explain() -> None:
        raise click.ClickException(
            f"`routing-points {name}` needs the server extra ({missing} is not installed): "
            f"{INSTALL_SERVER}"
        )

    return click.Command(
        name,
        callback=explain,
        help=f"(needs the server extra: {INSTALL_SERVER})",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class Commands(CommandGroup):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError as exc:
            # A group named alone: its message is its whole help, not one line.
            group = exc.ctx.command if exc.ctx is not None else ctx.command
            path = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            names = (
                ", ".join(group.list_commands(exc.ctx or ctx))
                if isinstance(group, click.Group)
                else ""
            )
            raise UsageMistake(f"{path} needs a command: {names} (see: {path} --help)") from None
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise UsageMistake(f"{exc.format_message()} (see: {path} --help)") from None
        except (KeyboardInterrupt, click.Abort):
            # One line and the shell's code for Ctrl-C, as `watch` does (click's own is a
            # blank line, "Aborted!" and 1, like any failure).
            interrupted()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SERVER_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in SERVER_COMMANDS:
            return command
        module_name, attribute = SERVER_COMMANDS[cmd_name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing not in SERVER_ONLY:
                raise
            return needs_server_extra(cmd_name, missing)
        loaded = getattr(module, attribute)
        assert isinstance(loaded, click.Command)
        return loaded


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="routing-points")
def main() -> None:
    """A self-hostable Wolkvox routing_points API, and the client to consume it."""


for command in (get, token_info, watch, history_command):
    main.add_command(command)
