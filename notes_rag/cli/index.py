"""`notes-rag index` and `notes-rag search`: build/update a notes index, query it.

notes-rag index corpus/                  # index in corpus/.notes-rag (incremental on re-runs)
notes-rag index ~/notes --out /tmp/idx   # index kept elsewhere; read it with --index /tmp/idx
notes-rag index ~/notes --watch          # then keep it current as notes change (Ctrl-C stops)
notes-rag search "Ile kosztował trening GPT-3?" -k 5 --mode hybrid
notes-rag search "positional embeddings" --json | jq '.hits[0].file'
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from notes_rag.cli import options
from notes_rag.cli.app import app
from notes_rag.cli.markup import note_text
from notes_rag.errors import Interrupted, NotesRagError
from notes_rag.index.config import RetrievalConfig

if TYPE_CHECKING:  # the index code loads FAISS
    from notes_rag.index.search import Hit

console = Console()
err_console = Console(stderr=True)


def _has_index(index_dir: Path) -> bool:
    """True when `index_dir` holds an index (a damaged one too: its run repairs it)."""
    from notes_rag.index import store

    try:
        return store.current_generation(index_dir) is not None
    except NotesRagError:
        return True


@contextmanager
def _what_is_kept(had_index: bool):
    """An interrupted or failed run says what is left: the previous index, or none at all."""
    try:
        yield
    except KeyboardInterrupt:
        kept = "the previous index is unchanged" if had_index else "no index was written"
        raise Interrupted(f"interrupted: {kept}; run the same command again to finish") from None
    except NotesRagError as e:
        if had_index or "the previous index is unchanged" not in str(e):
            raise
        raise NotesRagError(str(e).replace("the previous index is unchanged", "no index was written")) from None


class PassagesPerSecond(ProgressColumn):
    """The embedding rate (rich's estimate over the last 30 s), once there is one."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} passages/s" if speed else "", style="progress.data.speed")


@app.command()
def index(
    folder: Path = typer.Argument(
        ...,
        help="Folder of notes (.md, .markdown, .txt, .pdf, .ipynb), searched recursively; "
        "its .gitignore and .notes-ragignore rules apply.",
    ),
    out: Path = typer.Option(None, "--out", help="Where to write the index (default: FOLDER/.notes-rag)."),
    old_out: Path = typer.Option(None, "--index", hidden=True, help="Old spelling of --out."),
    encoder: Path = typer.Option(
        None,
        "--encoder",
        help="Local sentence-transformers model folder "
        "[default: multilingual-e5-small, converted offline on first use].",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the files that would be indexed and why the others are not; changes nothing."
    ),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Re-embed every file (a damaged index is repaired without it)."
    ),
    watch: bool = typer.Option(
        False, "--watch", help="Then keep watching FOLDER: changed, added and deleted files are re-indexed."
    ),
) -> None:
    """Build or update the search index of a notes folder; only changed files are re-embedded.

    Example: notes-rag index corpus/
    """
    from notes_rag.cli.index_listing import dry_run_listing, print_skipped, reported_skips
    from notes_rag.index.notes import NOTE_SUFFIXES, scan_notes

    if out is not None and old_out is not None and out != old_out:
        raise NotesRagError("give the index folder once, with --out")
    out = out or old_out
    if not folder.is_dir():
        raise NotesRagError(f"notes folder not found: {folder}")
    if dry_run:  # reads the notes, loads no encoder: no torch, nothing written
        console.print(dry_run_listing(folder, out))
        return
    # Read before the encoder loads, so a folder with nothing to index fails at once, saying why;
    # the run's own scan then finds PDFs and notebooks parsed (index/notes.py keeps them by hash).
    notes, skipped = scan_notes(folder, out)
    if not notes:
        print_skipped(err_console, skipped)
        raise NotesRagError(f"no readable notes in {folder} (looked for {', '.join(NOTE_SUFFIXES)})")
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder

    with console.status("loading the encoder..."):
        enc = load_encoder(encoder)
    ignore_file_size_signal()
    had_index = _has_index(Path(out) if out else folder / ".notes-rag")
    with (
        _what_is_kept(had_index),
        Progress(
            TextColumn("embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            PassagesPerSecond(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("embed", total=None)
        report = update_index(
            folder,
            out,
            enc,
            str(encoder) if encoder else None,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            rebuild=rebuild,
        )
    print_skipped(err_console, report.skipped)
    if report.rebuild_reason and report.rebuild_reason != "new index":
        console.print(f"[yellow]full rebuild:[/] {report.rebuild_reason}")
    if report.repaired:
        console.print(f"[yellow]repaired:[/] {report.repaired}")
    table = Table(title=f"Index of {folder}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in (
        ("files added", len(report.added)),
        ("files changed", len(report.changed)),
        ("files removed", len(report.removed)),
        ("files unchanged", report.unchanged),
        ("files skipped", len(reported_skips(report.skipped))),
        ("chunks embedded", report.chunks_embedded),
        ("chunks in index", report.chunks_total),
        ("seconds", f"{report.seconds:.1f}"),
    ):
        table.add_row(what, str(value))
    console.print(table)
    if watch:
        from notes_rag.cli.index_watch import watch_and_report

        watch_and_report(folder, out, enc, str(encoder) if encoder else None, console)


def ignore_file_size_signal() -> None:
    """Past a file size limit (`ulimit -f`) the kernel kills the writer with SIGXFSZ; ignored,
    the write fails with EFBIG instead, which `index` reports in one line, old index kept."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _snippet(text: str, width: int = 160) -> Text:
    """The chunk's beginning, markdown rendered, at most `width` cells with its lines joined."""
    shown = note_text(text)
    shown.plain = shown.plain.replace("\n", " ")  # same length: the styles stay in place
    shown.truncate(width, overflow="ellipsis")
    return shown


def search_listing(title: str, hits: list[Hit]) -> Group:
    """Each hit as a block: rank, score and file:lines on one line, never cut (file:lines is how
    a hit is found), then its heading path (bold) and the beginning of its text, indented and
    wrapped. A table would squeeze heading and text into a few columns at 80."""
    blocks: list[RenderableType] = [Text(title, style="bold")]
    for h in hits:
        blocks.append(Text.assemble((f"{h.rank:>2}", "cyan"), f"  {h.score:.3f}  {h.citation}"))
        body = Text(" > ".join(h.heading_path) or "–", style="bold").append("\n").append_text(_snippet(h.text))
        blocks.append(Padding(body, (0, 0, 0, 4)))
    return Group(*blocks)


@app.command()
def search(
    query: str = typer.Argument(..., help="The question or keywords."),
    k: int = options.K,
    mode: str = options.MODE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON (for scripts) instead of a table."),
    index_dir: Path = options.INDEX,
    bilingual: bool = typer.Option(
        RetrievalConfig.bilingual,
        "--bilingual/--no-bilingual",
        help="Also search the question translated to the other language (English <-> Polish) with the "
        "FreeDict dictionaries, if installed: apt install dict-freedict-eng-pol dict-freedict-pol-eng.",
    ),
    dict_dir: Path = typer.Option(
        Path(RetrievalConfig.dict_dir), "--dict-dir", help="Folder of the dictd dictionaries."
    ),
) -> None:
    """Search the indexed notes.

    Example: notes-rag search "Ile kosztował trening GPT-3?" -k 3
    """
    from notes_rag.index.encoder import preload_query_encoder
    from notes_rag.index.search import Retriever, resolve_index
    from notes_rag.index.store import encoder_path

    index_dir = resolve_index(index_dir)
    preload_query_encoder(encoder_path(index_dir))  # loads while the index does
    retriever = Retriever(index_dir, cfg=RetrievalConfig(bilingual=bilingual, dict_dir=str(dict_dir)))
    try:
        result = retriever.search(query, k=k, mode=mode)
    finally:
        retriever.close()
    if as_json:
        print(
            json.dumps(
                {
                    "query": query,
                    "mode": mode,
                    "top_cosine": result.top_cosine,
                    "hits": [h.to_dict() for h in result.hits],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    console.print(search_listing(f"{mode} search: {query}", result.hits))
    threshold = retriever.abstain_threshold
    note = (
        ""
        if threshold is None or result.top_cosine >= threshold
        else "  (below the abstention threshold: probably not in the notes)"
    )
    console.print(f"dense top-1 cosine {result.top_cosine:.3f}{note}", highlight=False)
