"""Entry point of the ``skystack`` command.

Errors that skystack raises on purpose become one line on stderr and exit code 2; ``--debug``
(anywhere on the command line) shows the traceback instead. Heavy libraries are imported inside
the commands, so ``skystack --help`` starts fast.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

import typer

from skystack import __version__
from skystack.cli import calibrate, convert, demo, enhance, info, planetary, process, trails
from skystack.cli import register as register_cli
from skystack.cli import stack as stack_cli

__all__ = ["app", "main", "run"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="skystack",
    help="From a night of astrophotography frames to a finished picture.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"skystack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks and debug messages (may be given anywhere)."
    ),
) -> None:
    """From a night of astrophotography frames to a finished picture."""


info.register(app)
calibrate.register(app)
register_cli.register(app)
stack_cli.register(app)
convert.register(app)
demo.register(app)
trails.register(app)
enhance.register(app)
planetary.register(app)
process.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    from skystack.cli._console import configure_logging
    from skystack.errors import SkystackError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    configure_logging(debug=debug)
    try:
        app(args=args, prog_name="skystack", standalone_mode=True)
    except SystemExit as exit_:
        # click exits after every command: 0, or 2 for a usage error it has already printed.
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    except SkystackError as err:
        if debug:
            traceback.print_exc()
        print(f"skystack: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("skystack: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("skystack: error: out of memory; try a smaller --memory budget", file=sys.stderr)
        return EXIT_ERROR
    finally:
        logging.shutdown()
    return 0


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
