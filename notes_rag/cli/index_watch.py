"""`notes-rag index DIR --watch`: after the first run, one line per update until Ctrl-C.

12:04:31 updated: 1 added, 1 changed, 0 removed; 7 chunks embedded, 1,302 in the index (0.8 s)
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from notes_rag.errors import NotesRagError


def update_line(report) -> str:
    """One update (a build.IndexReport) as one line."""
    what = (
        f"{len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed; "
        f"{report.chunks_embedded:,} chunks embedded, {report.chunks_total:,} in the index ({report.seconds:.1f} s)"
    )
    if report.repaired:
        what += f"; repaired: {report.repaired}"
    return f"{time.strftime('%H:%M:%S')} updated: {what}"


def watch_and_report(folder: Path, out: Path | None, enc, encoder_path: str | None, console: Console) -> None:
    """Watch `folder` and print each update until Ctrl-C, which ends it normally."""
    from notes_rag.index.watch import watch_index

    def failed(e: NotesRagError) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} [bold red]not updated:[/] {e}", highlight=False)

    console.print(f"watching {folder} for changes (Ctrl-C stops)", highlight=False)
    try:
        watch_index(
            folder,
            out,
            enc,
            encoder_path,
            on_update=lambda r: console.print(update_line(r), highlight=False),
            on_error=failed,
        )
    except KeyboardInterrupt:
        console.print("stopped watching")
