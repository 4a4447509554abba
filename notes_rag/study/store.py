"""The study database: cards, their FSRS state and review logs, in SQLite, one per notes folder.

    $NOTES_RAG_DATA or $XDG_DATA_HOME/notes-rag or ~/.local/share/notes-rag/
      quiz/<folder name>-<hash of the index folder's path>.sqlite

Tables: `cards` (the card as JSON, its source keys, status active|retired, the round-trip
result, the FSRS card as JSON and its due time), `reviews` (one row per answer: the rating, the
typed answer, the suggested rating, the FSRS review log as JSON) and `meta`. Checked cards are
kept, so a second session of the same notes starts from them without checking again.

`sync` compares the cards with the index's current passages: a card whose line is no longer in
its file is retired (never asked again, its reviews kept); one whose line moved gets its new
line number.

The history survives damage. The database runs in WAL mode with `synchronous=FULL` (a review
costs 4 ms more than NORMAL, 0.04 ms, measured on the 2-core dev machine 2026-12-06: nothing at
a human's pace, and a power cut loses no review). Opening runs `PRAGMA integrity_check`
(0.3 ms on a small database); a damaged database (a damaged page, not a database at all, or 0
bytes) is moved aside as `<file>.damaged-<date>`, a new one is made, and every row that can
still be read from the damaged file and from the backup (cards, reviews, meta) is copied in;
cards that could not be read are remade from the notes by the next session. `recovered` holds
the one line that says what was kept. `backup()` (after each session) copies the database to
`<file>.bak`, the previous backup rotated to `<file>.bak.1`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.study.cards import Card, content_hash
from notes_rag.study.passages import Passage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,            -- Card as JSON
    file TEXT NOT NULL,
    line_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',   -- active | retired
    trip TEXT,                     -- round-trip result as JSON (NULL: not checked)
    fsrs TEXT,                     -- fsrs.Card as JSON (NULL: never reviewed)
    due TEXT,                      -- ISO time the card is due (NULL: new)
    created TEXT NOT NULL,
    retired TEXT
);
CREATE INDEX IF NOT EXISTS cards_due ON cards(status, due);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    card_id TEXT NOT NULL REFERENCES cards(id),
    rating TEXT NOT NULL,          -- again | hard | good | easy (what was recorded)
    suggested TEXT,                -- what the grader suggested
    typed TEXT,
    reviewed TEXT NOT NULL,
    log TEXT NOT NULL              -- fsrs.ReviewLog as JSON
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def db_path(index_dir: Path) -> Path:
    """The study database of the notes indexed in `index_dir` (keyed by its resolved path)."""
    from notes_rag.chat.sessions import data_dir

    resolved = Path(index_dir).resolve()
    name = resolved.parent.name if resolved.name == ".notes-rag" else resolved.name
    key = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:12]
    return data_dir() / "quiz" / f"{name or 'notes'}-{key}.sqlite"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _locked(method):
    """Run a store method under the store's lock: the card-making thread adds cards while the
    session records reviews on the same connection."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return run


TABLES = ("cards", "reviews", "meta")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_SCHEMA)
    return conn


def damage(path: Path) -> str | None:
    """Why the database at `path` cannot be trusted, None when it is sound (or not there yet)."""
    if not path.exists():
        return None
    if path.is_file() and path.stat().st_size == 0:
        return "it is empty"
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as e:
        return " ".join(str(e).split())
    if rows != [("ok",)]:
        problems = sum(1 for r in rows for line in str(r[0]).splitlines() if not line.startswith("***"))
        return f"integrity_check found {problems} damaged place(s)"
    if names and not {"cards", "reviews"} <= names:
        return "it holds no study tables"
    return None


def readable_rows(path: Path, table: str) -> list[tuple]:
    """Every row of `table` that can still be read: all at once, else row by row (a damaged
    page loses only its rows), else what the sqlite3 shell's `.recover` finds."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return _recovered_rows(path, table)
    try:
        try:
            return conn.execute(f"SELECT rowid, * FROM {table}").fetchall()
        except sqlite3.Error:
            pass
        try:
            top = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        except sqlite3.Error:
            return _recovered_rows(path, table)
        rows = []
        for rowid in range(1, min(top, 1_000_000) + 1):
            try:
                rows += conn.execute(f"SELECT rowid, * FROM {table} WHERE rowid = ?", (rowid,)).fetchall()
            except sqlite3.Error:
                continue
        return rows
    finally:
        conn.close()


def _recovered_rows(path: Path, table: str) -> list[tuple]:
    """`table`'s rows as the sqlite3 shell's `.recover` rebuilds them ([] without the shell)."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return []
    scratch = path.with_name(path.name + ".recover")
    scratch.unlink(missing_ok=True)
    try:
        sql = subprocess.run([shell, str(path), ".recover"], capture_output=True, timeout=120).stdout
        subprocess.run([shell, str(scratch)], input=sql, capture_output=True, timeout=120)
        conn = sqlite3.connect(scratch)
        try:
            return conn.execute(f"SELECT rowid, * FROM {table}").fetchall()
        finally:
            conn.close()
    except (OSError, subprocess.SubprocessError, sqlite3.Error):
        return []
    finally:
        scratch.unlink(missing_ok=True)


def backups(path: Path) -> list[Path]:
    return [p for p in (path.with_name(path.name + ".bak"), path.with_name(path.name + ".bak.1")) if p.is_file()]


def recover(path: Path, why: str) -> str:
    """Move the damaged database aside, make a new one with every row still readable from it and
    from the backups; the one line that says what was kept."""
    aside = path.with_name(f"{path.name}.damaged-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):  # the WAL holds the newest reviews: it goes along
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    conn = _connect(path)
    kept = {t: 0 for t in TABLES}
    from_backup = 0
    try:
        for source in [aside, *backups(path)]:
            for table in TABLES:
                rows = readable_rows(source, table) if source.stat().st_size else []
                for row in rows:
                    cols = ", ".join(["rowid", *_columns(conn, table)][: len(row)])
                    marks = ", ".join("?" * len(row))
                    try:
                        cur = conn.execute(f"INSERT OR IGNORE INTO {table}({cols}) VALUES ({marks})", row)
                    except sqlite3.Error:  # a row too damaged to fit the table
                        continue
                    kept[table] += cur.rowcount
                    from_backup += cur.rowcount if source != aside and table == "reviews" else 0
    finally:
        conn.close()
    extra = f" ({from_backup} from the backup)" if from_backup else ""
    return (
        f"the study database {path} was damaged ({why}): moved aside to {aside.name}; kept {kept['cards']} "
        f"card(s) and {kept['reviews']} review(s){extra}; cards not kept are remade from your notes"
    )


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


class StudyStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self.recovered: str | None = None  # what was kept of a damaged database (one line)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            why = damage(self.path)
            if why is not None:
                self.recovered = recover(self.path, why)
            self.conn = _connect(self.path)
        except (OSError, sqlite3.Error) as e:
            raise NotesRagError(f"cannot open the study database {self.path}: {e}") from None

    @_locked
    def close(self) -> None:
        self.conn.close()

    @_locked
    def backup(self) -> Path:
        """Copy the database to `<file>.bak` (atomically), the previous one kept as `.bak.1`."""
        bak = self.path.with_name(self.path.name + ".bak")
        tmp = self.path.with_name(self.path.name + ".bak.tmp")
        tmp.unlink(missing_ok=True)
        dest = sqlite3.connect(tmp)
        try:
            self.conn.backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dest.close()
        if bak.is_file():
            os.replace(bak, self.path.with_name(self.path.name + ".bak.1"))
        os.replace(tmp, bak)
        return bak

    # -- cards ---------------------------------------------------------------------------------
    @_locked
    def add(self, card: Card, trip: dict | None) -> None:
        """Store a checked card (kept as it is when already stored)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO cards(id, data, file, line_hash, trip, created) VALUES (?, ?, ?, ?, ?, ?)",
            (
                card.card_id,
                json.dumps(card.to_dict(), ensure_ascii=False),
                card.file,
                card.line_hash,
                json.dumps(trip) if trip is not None else None,
                now().isoformat(),
            ),
        )

    @_locked
    def card(self, card_id: str) -> Card | None:
        row = self.conn.execute("SELECT data FROM cards WHERE id = ?", (card_id,)).fetchone()
        return Card.from_dict(json.loads(row[0])) if row else None

    @_locked
    def cards(self, status: str = "active") -> list[Card]:
        rows = self.conn.execute("SELECT data FROM cards WHERE status = ? ORDER BY created, id", (status,))
        return [Card.from_dict(json.loads(r[0])) for r in rows]

    @_locked
    def due(self, at: dt.datetime | None = None) -> list[Card]:
        """Active reviewed cards due at `at` (default now), most overdue first."""
        at = at or now()
        rows = self.conn.execute(
            "SELECT data FROM cards WHERE status = 'active' AND due IS NOT NULL AND due <= ? ORDER BY due",
            (at.isoformat(),),
        )
        return [Card.from_dict(json.loads(r[0])) for r in rows]

    @_locked
    def new(self) -> list[Card]:
        """Active cards never reviewed, oldest first."""
        rows = self.conn.execute("SELECT data FROM cards WHERE status = 'active' AND fsrs IS NULL ORDER BY created, id")
        return [Card.from_dict(json.loads(r[0])) for r in rows]

    @_locked
    def known_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM cards")}

    # -- FSRS state and reviews ----------------------------------------------------------------
    @_locked
    def fsrs_card(self, card_id: str):
        """The card's fsrs.Card (a new one, keyed to this card, when never reviewed)."""
        from fsrs import Card as FsrsCard

        row = self.conn.execute("SELECT fsrs FROM cards WHERE id = ?", (card_id,)).fetchone()
        if row and row[0]:
            return FsrsCard.from_json(row[0])
        return FsrsCard(card_id=int(card_id[:12], 16))

    @_locked
    def record(self, card: Card, fsrs_card, log, rating: str, suggested: str | None, typed: str | None) -> None:
        """Save one review: the new FSRS state and the log, in one transaction."""
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "UPDATE cards SET fsrs = ?, due = ? WHERE id = ?",
                (fsrs_card.to_json(), fsrs_card.due.isoformat(), card.card_id),
            )
            self.conn.execute(
                "INSERT INTO reviews(card_id, rating, suggested, typed, reviewed, log) VALUES (?, ?, ?, ?, ?, ?)",
                (card.card_id, rating, suggested, typed, log.review_datetime.isoformat(), log.to_json()),
            )

    @_locked
    def reviews(self, card_id: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT rating, suggested, typed, reviewed, log FROM reviews WHERE card_id = ? ORDER BY id", (card_id,)
        )
        return [dict(zip(("rating", "suggested", "typed", "reviewed", "log"), r)) for r in rows]

    # -- notes changes -------------------------------------------------------------------------
    @_locked
    def sync(self, passages: list[Passage]) -> tuple[int, int]:
        """Retire the active cards whose line is gone from its file; move the ones whose line
        moved. Returns (retired, moved)."""
        lines: dict[str, dict[str, int]] = {}
        for p in passages:
            where = lines.setdefault(p.file, {})
            for i, line in enumerate(p.text.splitlines()):
                where.setdefault(content_hash(_clean(line)), p.line_start + i)
        retired = moved = 0
        stamp = now().isoformat()
        with self.conn:
            self.conn.execute("BEGIN")
            for card in self.cards("active"):
                at = _find(card, lines.get(card.file, {}), passages)
                if at is None:
                    self.conn.execute(
                        "UPDATE cards SET status = 'retired', retired = ? WHERE id = ?", (stamp, card.card_id)
                    )
                    retired += 1
                elif at != card.line:
                    card.line = at
                    self.conn.execute(
                        "UPDATE cards SET data = ? WHERE id = ?",
                        (json.dumps(card.to_dict(), ensure_ascii=False), card.card_id),
                    )
                    moved += 1
        return retired, moved


def _clean(line: str) -> str:
    from notes_rag.study.spans import clean

    return clean(line)


def _find(card: Card, lines: dict[str, int], passages: list[Passage]) -> int | None:
    """The card's line number in the current notes, None when its line is gone. A card's line
    is a note line, or a sentence of a hard-wrapped paragraph (then found in a passage's text)."""
    if card.line_hash in lines:
        return lines[card.line_hash]
    from notes_rag.study.spans import units

    for p in passages:
        if p.file != card.file:
            continue
        for offset, _raw, sentence in units(p.text):
            if content_hash(_clean(sentence)) == card.line_hash:
                return p.line_start + offset
    return None
