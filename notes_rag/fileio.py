"""Atomic file writes and text decoding shared by every module that touches disk.

A write goes to a temporary file in the same folder, is flushed and fsynced, then renamed over
the target: readers see either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

# Legacy encodings common for Polish text, tried after UTF-8. cp1250 first: Windows notes are the
# usual case, and it decodes the ISO-8859-2 letters that differ (ą ś ź) as other letters, so we
# pick the candidate with the most Polish letters rather than the first that decodes.
LEGACY_ENCODINGS = ("cp1250", "iso-8859-2")
_POLISH = set("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path, what: str):
    """Parse a JSON file the user named; a missing or unreadable file is a one-line error."""
    from notes_rag.errors import NotesRagError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotesRagError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotesRagError(f"cannot read {what} {path}: {e}") from None


def looks_binary(data: bytes) -> bool:
    """NUL bytes or many control characters in the first 8 KiB: not a text file."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    ctrl = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return len(head) > 0 and ctrl / len(head) > 0.05


def decode_text(data: bytes) -> tuple[str, str] | None:
    """Decode note bytes: UTF-8 (BOM allowed), else the best legacy Polish encoding.

    Returns (text, encoding) or None when the bytes are binary or undecodable.
    """
    if looks_binary(data):
        return None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = None
    for enc in LEGACY_ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        score = sum(ch in _POLISH for ch in text)
        if best is None or score > best[0]:
            best = (score, text, enc)
    return (best[1], best[2]) if best else None
