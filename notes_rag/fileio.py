"""Atomic file writes, text decoding and the release's weight files, shared by every module that
touches disk.

A write goes to a temporary file in the same folder, is flushed and fsynced, then renamed over
the target: readers see either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
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


def release_file(name: str, env: str, what: str) -> Path | None:
    """A weights file beside the release model: `$env` if set (`none` or empty: no file, how the
    benchmarks compare with and without it), else `models/<name>` of this checkout when it is
    there (found without importing the model package). A named file that is missing is one
    NotesRagError line."""
    from notes_rag.errors import NotesRagError

    value = os.environ.get(env)
    if value is not None:
        if value.strip().lower() in ("", "none"):
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise NotesRagError(f"{env}={value}: no such {what} file")
        return path
    path = Path(__file__).resolve().parents[1] / "models" / name
    return path if path.is_file() else None


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


# A note is UTF-8 with a few damaged bytes when at most this share of its non-ASCII sequences is
# invalid. Measured 2026-12-06 on the Polish notes of corpus/ and eval_sets/dev2 (10 files):
# encoded in cp1250 or ISO-8859-2 the share is 1.0 in every file (no valid UTF-8 sequence at all);
# UTF-8 with 1, 3, 10 or 30 random bad bytes it is at most 0.007, 0.021, 0.059 and 0.175.
MAX_BAD_UTF8_SHARE = 0.5
MAX_LINES_NAMED = 5


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # "utf-8", "utf-8 (N bytes replaced)" is said in `note`; or a legacy one
    note: str | None = None  # one line for the index run: bytes replaced, and on which lines


def decode_note(data: bytes) -> Decoded | None:
    """Decode note bytes: UTF-8 (BOM allowed); mostly valid UTF-8 with its bad bytes replaced
    (said in `note`, with the lines); a legacy Polish encoding only when it decodes the bytes
    cleanly and UTF-8 does not; None for binary data."""
    if looks_binary(data):
        return None
    try:
        return Decoded(data.decode("utf-8-sig"), "utf-8")
    except UnicodeDecodeError:
        pass
    bad = _bad_utf8_offsets(data)
    text = data.decode("utf-8-sig", "replace")
    valid = sum(1 for ch in text if ord(ch) >= 0x80 and ch != "\ufffd")
    if len(bad) / (len(bad) + valid) > MAX_BAD_UTF8_SHARE:
        legacy = _legacy(data)
        if legacy is not None:
            return legacy
    lines = sorted({data.count(b"\n", 0, at) + 1 for at in bad})
    named = ", ".join(map(str, lines[:MAX_LINES_NAMED])) + (", …" if len(lines) > MAX_LINES_NAMED else "")
    line_word = "line" if len(lines) == 1 else "lines"
    note = f"{len(bad)} invalid UTF-8 byte(s) replaced ({line_word} {named})"
    return Decoded(text, "utf-8", note)


def _bad_utf8_offsets(data: bytes) -> list[int]:
    """Byte offsets where UTF-8 decoding fails (one per invalid sequence, as `replace` counts)."""
    out: list[int] = []
    pos = 0
    while pos < len(data):
        try:
            data[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as e:
            out.append(pos + e.start)
            pos += e.end
    return out


def _legacy(data: bytes) -> Decoded | None:
    """The legacy encoding that decodes `data` cleanly (no control characters but whitespace),
    the one giving the most Polish letters; None when none does."""
    best = None
    for enc in LEGACY_ENCODINGS:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if any((ord(ch) < 32 and ch not in "\t\n\r\f") or 0x80 <= ord(ch) < 0xA0 for ch in text):
            continue
        score = sum(ch in _POLISH for ch in text)
        if best is None or score > best[0]:
            best = (score, text, enc)
    return Decoded(best[1], best[2]) if best else None


def decode_text(data: bytes) -> tuple[str, str] | None:
    """(text, encoding) of note bytes (`decode_note`), or None when they are binary."""
    decoded = decode_note(data)
    return None if decoded is None else (decoded.text, decoded.encoding)
