"""`conveyor` command line: operator errors become one line on stderr and exit 1."""

from __future__ import annotations

import os
import sys
import threading

import pydantic
import typer

from conveyor.cli import jobs as jobs_commands
from conveyor.cli import periodic as periodic_commands
from conveyor.cli import queues as queues_commands
from conveyor.cli import run as run_commands
from conveyor.errors import ConveyorError

cli = typer.Typer(
    name="conveyor",
    help="Background jobs on SQLite, PostgreSQL or Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Rich markup would eat every "[env: …; default: …]" of the options' help.
    rich_markup_mode=None,
)
run_commands.register(cli)
jobs_commands.register(cli)
periodic_commands.register(cli)
queues_commands.register(cli)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "setting"
        return f"invalid setting {where}: {first['msg']}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    try:
        # standalone mode: usage errors print their usage line and exit 2 (click's convention)
        cli(args=argv, standalone_mode=True)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except (ConveyorError, pydantic.ValidationError) as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    code = code if isinstance(code, int) else (0 if code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    if threading.active_count() > 1:
        # A sync task that ignored its timeout still holds a thread, and Python would wait
        # for it forever at exit; everything that matters is written and flushed by now.
        os._exit(code)
    sys.exit(code)
