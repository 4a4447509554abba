"""What `notes-rag index` says about a folder's files: the `--dry-run` listing and the report of
the files a run skipped, with why (binary, unsupported type, no text layer, ignored, ...).

Imports nothing heavy (no torch, FAISS or encoder): `index --dry-run` only walks and reads notes.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from notes_rag.index.notes import SkippedFile, describe, scan_notes

# Hidden entries (.git, .obsidian) are tool state, skipped on every run: only --dry-run lists
# them. A partly indexed file (a PDF with scanned pages) is indexed: named, not counted.
QUIET_KINDS = ("hidden",)
PARTIAL = "partial"
# A run lists this many skipped files of one kind, then counts the rest (--dry-run lists all).
SHOWN_PER_KIND = 10


def reported_skips(skipped: list[SkippedFile]) -> list[SkippedFile]:
    """The skipped files an `index` run counts: not hidden, not partly indexed."""
    return [s for s in skipped if s.kind not in QUIET_KINDS and s.kind != PARTIAL]


def print_skipped(console: Console, skipped: list[SkippedFile]) -> None:
    """One line per skipped file (and partly indexed one) with why, at most `SHOWN_PER_KIND` of a kind."""
    shown: dict[str, int] = {}
    for s in skipped:
        if s.kind in QUIET_KINDS:
            continue
        shown[s.kind] = shown.get(s.kind, 0) + 1
        if shown[s.kind] <= SHOWN_PER_KIND:
            label = "[cyan]partly indexed[/]" if s.kind == PARTIAL else "[yellow]skipped[/]"
            console.print(f"{label} {escape(s.path)}: {escape(s.reason)}", highlight=False)
    for kind, n in shown.items():
        if n > SHOWN_PER_KIND:
            console.print(
                f"[yellow]skipped[/] {n - SHOWN_PER_KIND} more ({kind}); notes-rag index --dry-run lists them all",
                highlight=False,
            )


def dry_run_listing(folder: Path, index_dir: Path | None) -> Group:
    """The files `index` would read, with what each reads as, and every entry it would leave out."""
    notes, skipped = scan_notes(folder, index_dir)
    partial = {s.path for s in skipped if s.kind == PARTIAL}
    left_out = [s for s in skipped if s.kind != PARTIAL]
    would = Table(title=f"Would index ({len(notes)} files)", title_justify="left", show_edge=False, box=None)
    would.add_column("file", no_wrap=True)
    would.add_column("reads as", overflow="fold")
    for n in notes:
        would.add_row(n.path, describe(n), style="cyan" if n.path in partial else None)
    skip = Table(title=f"Not indexed ({len(left_out)})", title_justify="left", show_edge=False, box=None)
    skip.add_column("file", no_wrap=True)
    skip.add_column("why", overflow="fold")
    for s in left_out:
        skip.add_row(s.path, s.reason, style="dim" if s.kind in QUIET_KINDS else "yellow")
    parts = [would, Text(""), skip] if left_out else [would]
    if not notes:
        parts.append(Text(f"nothing to index in {folder}", style="bold yellow"))
    return Group(*parts)
