"""Jumping from a cited passage to its file: terminal hyperlinks and `/open N` in the editor.

A source's place (`notes.md:12-18`) links to its file (`file:///…/notes.md`, an OSC 8
hyperlink) where the console is a terminal that can show one: never in `--json` or when piped.
`/open N` opens passage N in `$VISUAL` or `$EDITOR` at its first line: `+LINE FILE` for
vi/vim/nvim, nano and emacs, `-g FILE:LINE` for VS Code, `FILE:LINE` for editors that read that;
any other editor gets the file alone. A page or cell citation (`slides.pdf:p12`,
`nb.ipynb:cell 7`) has no line in the file, so the file is opened at its start. With no editor
set (or one that cannot be started) the place is printed instead.

Files are found under the notes folder: the index folder's parent for `notes/.notes-rag` (where
`notes-rag index` puts it, so a moved notes folder still finds its files), else the folder the
index recorded when it was built (`index --out DIR`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console

from notes_rag.chat.answer import Source

PLUS_LINE = ("vi", "vim", "nvim", "view", "gvim", "nano", "emacs", "emacsclient", "kak", "micro")
DASH_G = ("code", "code-insiders", "codium", "cursor")  # VS Code and its forks: -g FILE:LINE
COLON_LINE = ("subl", "hx", "helix", "zed")
NO_LINK_TERMS = ("dumb", "linux")  # the Linux console prints OSC 8 as garbage


def supports_links(console: Console, env: Mapping[str, str] | None = None) -> bool:
    """Can this console show hyperlinks: a terminal with styles, not a dumb or Linux console?"""
    env = os.environ if env is None else env
    return console.is_terminal and console.color_system is not None and env.get("TERM", "") not in NO_LINK_TERMS


def notes_root(index_dir: Path, meta: Mapping | None = None) -> Path:
    """The notes folder of an index folder (`meta`: the index's recorded build facts)."""
    from notes_rag.index.build import INDEX_DIRNAME

    index_dir = Path(index_dir).resolve()
    recorded = (meta or {}).get("notes")
    if index_dir.name == INDEX_DIRNAME or not recorded:
        return index_dir.parent
    return Path(recorded)


def source_path(root: Path | None, source: Source) -> Path | None:
    """The cited file, absolute, when it is there."""
    if root is None:
        return None
    path = (root / source.file).resolve()
    return path if path.is_file() else None


def source_line(source: Source) -> int | None:
    """The line to open at: the passage's first, unless it is cited by page or cell."""
    return None if source.location or source.line_start < 1 else source.line_start


def link_style(root: Path | None, source: Source) -> str:
    """A rich style that links the source's place to its file ("" when the file is not found)."""
    path = source_path(root, source)
    return f"link {path.as_uri()}" if path is not None else ""


def editor_command(path: Path, line: int | None, env: Mapping[str, str] | None = None) -> list[str] | None:
    """The command that opens `path` at `line` in the user's editor; None with no editor set."""
    env = os.environ if env is None else env
    editor = env.get("VISUAL") or env.get("EDITOR")
    if not editor or not editor.strip():
        return None
    argv = shlex.split(editor)
    name = Path(argv[0]).name.removesuffix(".exe")
    if line is None:
        return [*argv, str(path)]
    if name in PLUS_LINE:
        return [*argv, f"+{line}", str(path)]
    if name in DASH_G:
        return [*argv, "-g", f"{path}:{line}"]
    if name in COLON_LINE:
        return [*argv, f"{path}:{line}"]
    return [*argv, str(path)]


def open_source(root: Path | None, source: Source, env: Mapping[str, str] | None = None) -> str:
    """Open the source in the editor; what to tell the user (the place itself when no editor
    could open it)."""
    path = source_path(root, source)
    line = source_line(source)
    if path is None:
        return f"{source.citation}: file not found under {root}" if root else f"{source.citation}: notes folder unknown"
    place = f"{path}:{line}" if line else str(path)
    argv = editor_command(path, line, env)
    if argv is None:
        return f"{place}  (set $VISUAL or $EDITOR to open it from here)"
    try:
        subprocess.run(argv, check=False)
    except OSError as e:
        return f"{place}  (could not start {argv[0]}: {e.strerror or e})"
    return f"opened {place}"
