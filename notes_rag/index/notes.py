"""Find and read the note files of a folder: which files count as notes, how they are decoded.

`scan_notes(folder)` walks the folder for `.md`, `.markdown` and `.txt` files (hidden folders such
as the index's own `.notes-rag/` are skipped), decodes each with `fileio.decode_text` (UTF-8, then
the legacy Polish encodings) and returns them with a sha256 content hash; binary or undecodable
files are reported as skipped with the reason, never indexed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.fileio import decode_text

NOTE_SUFFIXES = (".md", ".markdown", ".txt")


@dataclass(frozen=True)
class NoteFile:
    path: str  # relative to the notes folder, '/'-separated: the id of the file in the index
    text: str
    encoding: str
    sha256: str
    mtime: float


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        # Hidden folders hold tool state (.git, .notes-rag, .obsidian), not notes.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(NOTE_SUFFIXES):
                found.append(Path(root) / name)
    return found


def scan_notes(folder: Path) -> tuple[list[NoteFile], list[SkippedFile]]:
    """Read every note under `folder`; raise NotesRagError when the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotesRagError(f"notes folder not found: {folder}")
    notes, skipped = [], []
    for path in _walk(folder):
        rel = path.relative_to(folder).as_posix()
        try:
            data = path.read_bytes()
            mtime = path.stat().st_mtime
        except OSError as e:
            skipped.append(SkippedFile(rel, f"unreadable: {e.strerror or e}"))
            continue
        decoded = decode_text(data)
        if decoded is None:
            skipped.append(SkippedFile(rel, "binary or undecodable"))
            continue
        text, encoding = decoded
        if not text.strip():
            skipped.append(SkippedFile(rel, "empty"))
            continue
        sha = hashlib.sha256(data).hexdigest()
        notes.append(NoteFile(rel, text, encoding, sha, mtime))
    return notes, skipped
