"""The typer app every command module registers on, and the error handling around it.

Each command group lives in its own module of this package that only parses options, calls
library functions and renders results; `main.py` imports them all. User errors
(`NotesRagError`) print as one line and exit 1, Ctrl-C exits 130; `--debug` shows tracebacks.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from notes_rag.errors import NotesRagError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: typer's rich help prints every flag as `--json <bool>`, as if it took a value.
    rich_markup_mode=None,
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
