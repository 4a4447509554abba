"""`notes-rag doctor`: check everything the product keeps, fully, and say what is wrong.

    notes-rag doctor              # the model folder, the index, the study databases
    notes-rag doctor --fix        # also write a manifest for a model folder that has none

The checks at load are the cheap ones (model/manifest.py hashes the model's own files; the index
hashes files whose size or time changed). The doctor hashes every file a manifest lists (the
encoder delta included), every index file, and runs `PRAGMA integrity_check` on every study
database. One line per thing checked; exit 1 when something is wrong.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from notes_rag.cli import options
from notes_rag.cli.app import app
from notes_rag.errors import NotesRagError

console = Console(highlight=False)


def _model_lines(model: Path | None, fix: bool) -> list[tuple[bool, str]]:
    from notes_rag.model.manifest import MANIFEST_FILE, check_folder, read_manifest, weights_finite, write_manifest
    from notes_rag.model.release import resolve_model

    folder = resolve_model(model)
    problems = check_folder(folder)
    if fix and problems and not (folder / MANIFEST_FILE).is_file() and weights_finite(folder) is not False:
        write_manifest(folder)
        return [(True, f"model {folder}: wrote {MANIFEST_FILE} (its files as they are now)")]
    if problems:
        return [(False, f"model {folder}: {p}") for p in problems]
    listed = len(read_manifest(folder)["files"])
    return [(True, f"model {folder}: {listed} file(s) match {MANIFEST_FILE}; weights finite")]


def _index_lines(index: Path | None) -> list[tuple[bool, str]]:
    from notes_rag.index import integrity, store
    from notes_rag.index.search import resolve_index

    try:
        index_dir = resolve_index(index)
        gen = store.current_generation(index_dir)
    except NotesRagError as e:
        if index is None and "no index found" in str(e):
            return [(True, "index: none in ./.notes-rag or ./corpus/.notes-rag (nothing to check)")]
        return [(False, f"index: {e}")]
    problems = integrity.damage(gen, full=True)
    if problems:
        return [(False, f"index {index_dir}: {integrity.describe(problems)}; {integrity.fix_command(index_dir)}")]
    return [(True, f"index {index_dir}: {gen.name} matches its manifest")]


def _study_lines() -> list[tuple[bool, str]]:
    from notes_rag.chat.sessions import data_dir
    from notes_rag.study.store import damage

    out = []
    for db in sorted((data_dir() / "quiz").glob("*.sqlite")):
        why = damage(db)
        out.append((why is None, f"study database {db}: {why or 'ok'}" + (" (opening it recovers it)" if why else "")))
    return out


@app.command()
def doctor(
    model: Path = options.MODEL,
    index: Path = options.INDEX,
    fix: bool = typer.Option(False, "--fix", help="Write a manifest for a model folder that has none."),
) -> None:
    """Check the model's files against their sha256 manifest, the index and the study databases.

    Example: notes-rag doctor
    """
    lines = []
    for check in (lambda: _model_lines(model, fix), lambda: _index_lines(index), _study_lines):
        try:
            lines += check()
        except NotesRagError as e:
            lines.append((False, str(e)))
    for ok, line in lines:
        console.print(
            Text("ok  " if ok else "bad ", style="green" if ok else "bold red"), Text(line), sep="", soft_wrap=True
        )
    if not all(ok for ok, _ in lines):
        raise typer.Exit(1)
