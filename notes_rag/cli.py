"""The `notes-rag` command line: the typer app and its error handling.

Each command group lives in its own `cli_*.py` module that only parses options, calls library
functions and renders results; this module wires them together. User errors
(`NotesRagError`) print as one line and exit 1, Ctrl-C exits 130; `--debug` shows tracebacks.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from .errors import NotesRagError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Chat with your study notes, answered by a GPT trained by this project.",
)
err_console = Console(stderr=True)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """notes-rag: index your notes, then chat with them."""


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        app()
    except NotesRagError as e:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


# Command modules register themselves on `app` when imported.
from . import cli_train  # noqa: E402,F401
from . import cli_eval  # noqa: E402,F401
from . import cli_data  # noqa: E402,F401
from . import cli_chat  # noqa: E402,F401
from . import cli_index  # noqa: E402,F401
