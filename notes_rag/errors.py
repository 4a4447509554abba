"""The one exception type for problems the user can fix (bad path, corrupt file, missing index).

The CLI prints these as a single line and exits non-zero; anything else is a bug and keeps its
traceback.
"""


class NotesRagError(Exception):
    """A user-facing error; its message is one readable line."""


class Interrupted(NotesRagError):
    """Ctrl-C, turned into a line saying what was kept (exit 130). Not a KeyboardInterrupt: typer
    turns those into a silent exit 130."""


def describe(e: BaseException) -> tuple[str, str, int]:
    """(one-line message, kind, exit code) of any exception, as the CLI reports it.

    kind: "user" (a `NotesRagError`: the message says what to do), "system" (an OSError: a full
    disk, a permission), "interrupted" (Ctrl-C, exit 130) or "internal" (a bug, exit 2).
    """
    if isinstance(e, Interrupted):
        return " ".join(str(e).split()), "interrupted", 130
    if isinstance(e, NotesRagError):
        return " ".join(str(e).split()), "user", 1
    if isinstance(e, KeyboardInterrupt):
        return (" ".join(str(e).split()) or "interrupted"), "interrupted", 130
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}", "system", 1
    return " ".join(f"{type(e).__name__}: {e}".split()), "internal", 2


def error_line(e: BaseException) -> str:
    """`error: ...` (or `internal error: ...`) on one line, as the chat prints a failed turn."""
    message, kind, _ = describe(e)
    return f"{'internal error' if kind == 'internal' else 'error'}: {message}"
