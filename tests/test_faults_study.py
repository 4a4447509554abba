"""Fault injection, issue 30 row 5 (and row 9's `quiz --due` count): the study database damaged
inside, overwritten, emptied. Each asserts the one line, that the session goes on, and that the
review history has the reviews it had (from the damaged file and the rotated backup)."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3

import pytest
from rich.console import Console
from test_study_store import _cards, _index

from notes_rag.cli.quiz import quiz_loop
from notes_rag.study.schedule import review
from notes_rag.study.session import QuizSession
from notes_rag.study.store import StudyStore, damage, db_path

T0 = dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.timezone.utc)  # long ago: every card reviewed then is due


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from tiny_encoder import build_tiny_encoder

    from notes_rag.index.encoder import load_encoder

    folder = build_tiny_encoder(tmp_path_factory.mktemp("enc"))
    return folder, load_encoder(folder)


@pytest.fixture()
def studied(tmp_path, encoder, monkeypatch):
    """An index, its study database with 2 cards reviewed (due now) and 600 more reviews (so the
    file spans many pages), backed up, then 5 reviews after the backup."""
    monkeypatch.setenv("NOTES_RAG_DATA", str(tmp_path / "data"))
    index = _index(tmp_path, encoder)
    _, cards = _cards(index)
    path = db_path(index)
    store = StudyStore(path)
    for c in cards[:2]:
        store.add(c, {"passed": True})
        review(store, c, "again", "again", "nie wiem", at=T0)
    for i in range(600):
        review(store, cards[i % 2], "again", "again", f"odpowiedź {i} " * 5, at=T0)
    store.backup()
    for _ in range(5):
        review(store, cards[0], "again", "again", "po kopii", at=T0)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return index, path, cards[:2], _reviews(path)


def _reviews(path) -> set[tuple]:
    conn = sqlite3.connect(path)
    try:
        return set(conn.execute("SELECT id, card_id, rating, typed, reviewed FROM reviews"))
    finally:
        conn.close()


def _open_and_show(index) -> tuple[QuizSession, list[str]]:
    """Open a `quiz --due` session and run it until the first answer (Ctrl-D); the lines shown."""
    console = Console(record=True, width=300)
    session = QuizSession.open(index, due_only=True)
    try:
        quiz_loop(session, console, read=lambda prompt: (_ for _ in ()).throw(EOFError))
    finally:
        session.close()
    return session, [line for line in console.export_text().splitlines() if line.strip()]


def _damage_pages(path, pages=(6, 12)) -> None:
    """Overwrite the b-tree headers of two pages (the file header stays intact)."""
    data = bytearray(path.read_bytes())
    assert len(data) > 4096 * 14
    for page in pages:
        data[4096 * page : 4096 * page + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))


def test_damage_inside_keeps_every_review_readable_and_the_backup_fills_the_rest(studied):
    index, path, cards, before = studied
    _damage_pages(path)
    assert damage(path) is not None
    session, shown = _open_and_show(index)
    recovered = [line for line in shown if "was damaged" in line]
    assert len(recovered) == 1 and "moved aside" in recovered[0] and "kept" in recovered[0]
    assert list(path.parent.glob(f"{path.name}.damaged-*"))  # the damaged file is kept
    assert _reviews(path) == before  # nothing lost: the damaged pages' rows came from the backup
    assert damage(path) is None


def test_an_empty_database_is_not_silently_replaced(studied):
    index, path, cards, before = studied
    path.write_bytes(b"")
    session, shown = _open_and_show(index)
    assert sum("was damaged (it is empty)" in line for line in shown) == 1
    after = _reviews(path)
    assert len(after) == len(before) - 5 and after < before  # all but the 5 made after the backup
    assert "nothing is due" not in "\n".join(shown)  # the 2 due cards are still due


def test_a_file_that_is_not_a_database_is_recovered_from_the_backup(studied):
    index, path, cards, before = studied
    path.write_bytes(os.urandom(8192))
    session, shown = _open_and_show(index)
    assert sum("was damaged" in line for line in shown) == 1
    assert len(_reviews(path)) == len(before) - 5


def test_quiz_due_counts_the_due_cards_and_each_session_rotates_the_backup(studied):
    index, path, cards, before = studied
    bak = path.with_name(path.name + ".bak")
    first = bak.read_bytes()
    session, shown = _open_and_show(index)
    assert session.planned == 2 and any("[1/2]" in line for line in shown)  # not [1/10]
    assert path.with_name(path.name + ".bak.1").read_bytes() == first  # the previous backup kept
    assert _reviews(bak) == before  # the new backup holds everything
