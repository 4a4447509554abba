"""Find and read the note files of a folder: which files count, how each is read, why others not.

`scan_notes(folder, index_dir)` walks the folder top-down (`index.ignore`: hidden entries, the
index's own folder and the ignore files' rules are left out, ignored folders are not entered),
reads each supported file with its reader (`index.readers`: markdown and text decoded with
`fileio.decode_note`: UTF-8, mostly-UTF-8 with its few bad bytes replaced and named, then the
legacy Polish encodings; PDFs; notebooks) and returns the
notes with a sha256 of their bytes, and every file left out with its reason: hidden, ignored,
unsupported type, binary, empty, no text layer, encrypted, corrupt, unreadable.
`walk_folder` is the walk alone (no file is read). Parsed PDFs and notebooks are kept by content
hash, so a process scanning again (the `index` command, `--watch`) parses only what changed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.fileio import decode_note, looks_binary
from notes_rag.index.ignore import IgnoreRules
from notes_rag.index.readers import (
    NOTEBOOK_SUFFIX,
    PDF_SUFFIX,
    SUPPORTED_SUFFIXES,
    Document,
    Unreadable,
)

NOTE_SUFFIXES = SUPPORTED_SUFFIXES  # the name index/build.py and the CLI know it by
SNIFF_BYTES = 8192  # enough of an unsupported file to tell binary from text
# Parsed PDFs and notebooks by content hash, for a process that scans the folder more than once:
# parsing costs ~8 ms a slide, 55-60 ms a page of dense text (docs/BENCHMARKS.md), hashing far less.
PARSED_CACHE_FILES = 256
_parsed: dict[tuple[str, str], tuple[Document, str]] = {}


@dataclass(frozen=True)
class NoteFile:
    path: str  # relative to the notes folder, '/'-separated: the id of the file in the index
    doc: Document
    encoding: str  # of a text note; "pdf" or "ipynb" for those
    sha256: str
    mtime: float

    @property
    def text(self) -> str:
        return self.doc.text


@dataclass(frozen=True)
class SkippedFile:
    path: str  # a folder's ends with "/"
    reason: str
    # hidden | ignored | unsupported | binary | empty | no text layer | encrypted | corrupt | unreadable,
    # or partial: the file is indexed but some of it is not (a PDF's scanned pages)
    kind: str = "unreadable"


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _unsupported(path: Path, rel: str) -> SkippedFile:
    ext = _suffix(rel) or "no extension"
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as e:
        return SkippedFile(rel, f"unreadable: {e.strerror or e}")
    if looks_binary(head):
        return SkippedFile(rel, f"binary ({ext})", "binary")
    return SkippedFile(rel, f"unsupported type ({ext})", "unsupported")


def walk_folder(folder: Path, index_dir: Path | None = None) -> tuple[list[str], list[SkippedFile]]:
    """The files a reader would read (relative paths, sorted walk order), and those left out
    without reading them: hidden, ignored, unsupported or binary types."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotesRagError(f"notes folder not found: {folder}")
    rules = IgnoreRules(folder, index_dir)
    found: list[str] = []
    skipped: list[SkippedFile] = []
    for root, dirs, files in os.walk(folder):
        rel_dir = Path(root).relative_to(folder).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        rules.enter(rel_dir)
        kept = []
        for d in sorted(dirs):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            why = rules.reason(rel, is_dir=True)
            if why is None:
                kept.append(d)
            elif why[0] != "index":  # the index itself is no news to anyone
                skipped.append(SkippedFile(rel + "/", why[1], why[0]))
        dirs[:] = kept
        for name in sorted(files):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            why = rules.reason(rel, is_dir=False)
            if why is not None:
                skipped.append(SkippedFile(rel, why[1], why[0]))
            elif _suffix(name) in SUPPORTED_SUFFIXES:
                found.append(rel)
            else:
                skipped.append(_unsupported(Path(root) / name, rel))
    return found, skipped


def read_document(data: bytes, name: str) -> tuple[Document, str]:
    """The file's `Document` and its encoding; raises `Unreadable`."""
    suffix = _suffix(name)
    if suffix == PDF_SUFFIX:
        from notes_rag.index.readers.pdf import read_pdf

        return read_pdf(data), "pdf"
    if suffix == NOTEBOOK_SUFFIX:
        from notes_rag.index.readers.notebook import read_notebook

        return read_notebook(data), "ipynb"
    decoded = decode_note(data)
    if decoded is None:
        raise Unreadable("binary or undecodable", "binary")
    return Document(decoded.text, notes=(decoded.note,) if decoded.note else ()), decoded.encoding


def read_note(folder: Path, rel: str) -> NoteFile:
    """Read one note; raises `Unreadable` with the reason it cannot be indexed."""
    path = Path(folder) / rel
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as e:
        raise Unreadable(f"unreadable: {e.strerror or e}") from None
    sha = hashlib.sha256(data).hexdigest()
    key = (sha, _suffix(rel))
    parsed = _parsed.get(key)
    if parsed is None:
        parsed = read_document(data, rel)
        if key[1] in (PDF_SUFFIX, NOTEBOOK_SUFFIX):
            if len(_parsed) >= PARSED_CACHE_FILES:
                _parsed.pop(next(iter(_parsed)))  # the oldest entry
            _parsed[key] = parsed
    doc, encoding = parsed
    if not doc.text.strip():
        raise Unreadable("empty", "empty")
    return NoteFile(rel, doc, encoding, sha, mtime)


def scan_notes(folder: Path, index_dir: Path | None = None) -> tuple[list[NoteFile], list[SkippedFile]]:
    """Read every note under `folder`; raise NotesRagError when the folder is missing.
    `index_dir`: an index kept inside the folder under another name than `.notes-rag`."""
    candidates, skipped = walk_folder(folder, index_dir)
    notes = []
    for rel in candidates:
        try:
            note = read_note(folder, rel)
        except Unreadable as e:
            skipped.append(SkippedFile(rel, str(e), e.kind))
            continue
        notes.append(note)
        if note.doc.notes:  # indexed, but not all of it: said on every run
            skipped.append(SkippedFile(rel, "; ".join(note.doc.notes), "partial"))
    skipped.sort(key=lambda s: s.path)
    return notes, skipped


def describe(note: NoteFile) -> str:
    """What the index makes of a note, for `index --dry-run`: its kind and size, any pages left out."""
    doc = note.doc
    if doc.unit:
        n = len(doc.segments)
        what = f"{'PDF' if doc.unit == 'page' else 'notebook'}, {n} {doc.unit}{'s' if n != 1 else ''}"
    else:
        what = f"{'markdown' if _suffix(note.path) in ('.md', '.markdown') else 'text'}, {note.encoding}"
    return "; ".join((what, *doc.notes))
