"""Study mode storage: FSRS state and review logs round-trip through SQLite; editing a note
retires its cards; the Anki export opens as a zip of the expected SQLite tables with stable GUIDs."""

from __future__ import annotations

import datetime as dt
import sqlite3
import zipfile

import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.errors import NotesRagError
from notes_rag.study.export import export_deck, guid
from notes_rag.study.make import candidates, spans_of
from notes_rag.study.passages import all_passages
from notes_rag.study.schedule import review
from notes_rag.study.store import StudyStore, db_path

NOTE = """# Tokenizacja

Słownik to tabela odwzorowań, która przypisuje tokenom identyfikatory.
W 1943 roku Warren McCulloch i Walter Pitts zaproponowali matematyczny model neuronu.
Embeddingi to wektory liczb przypisane tokenom przez warstwę wejściową modelu.
"""


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from notes_rag.index.encoder import load_encoder

    folder = build_tiny_encoder(tmp_path_factory.mktemp("enc"))
    return folder, load_encoder(folder)


def _index(root, encoder, text=NOTE):
    from notes_rag.index.build import update_index

    notes = root / "notes"
    notes.mkdir(exist_ok=True)
    (notes / "tokeny.md").write_text(text, encoding="utf-8")
    update_index(notes, root / "index", encoder[1], encoder_path=str(encoder[0]))
    return root / "index"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, encoder):
    return _index(tmp_path_factory.mktemp("notes"), encoder)


def _cards(index):
    passages = all_passages(index)
    return passages, [next(candidates(p, s)) for p, s in spans_of(passages)]


def test_fsrs_state_round_trips_through_sqlite(tmp_path, indexed):
    _, cards = _cards(indexed)
    card = cards[0]
    store = StudyStore(tmp_path / "study.sqlite")
    store.add(card, {"passed": True})
    t0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)
    first = review(store, card, "good", "good", "tabela", at=t0)
    store.close()
    again = StudyStore(tmp_path / "study.sqlite")
    state = again.fsrs_card(card.card_id)
    assert state.to_dict() == first.to_dict() and state.due > t0
    assert again.due(at=t0) == [] and again.due(at=state.due)[0].card_id == card.card_id
    second = review(again, card, "again", "good", "nie wiem", at=state.due)
    assert second.due < state.due + dt.timedelta(days=1)  # forgotten: soon again
    logs = again.reviews(card.card_id)
    assert [r["rating"] for r in logs] == ["good", "again"] and logs[1]["typed"] == "nie wiem"
    assert again.new() == []  # reviewed cards are no longer new


def test_editing_a_note_retires_its_cards(tmp_path, encoder):
    index = _index(tmp_path, encoder)
    _, cards = _cards(index)
    store = StudyStore(tmp_path / "study.sqlite")
    for c in cards:
        store.add(c, None)
    kept = next(c for c in cards if "Embeddingi" in c.line_text)
    gone = next(c for c in cards if "1943" in c.line_text)
    edited = NOTE.replace("W 1943 roku Warren McCulloch i Walter Pitts zaproponowali matematyczny model neuronu.\n", "")
    edited = edited.replace("# Tokenizacja\n", "# Tokenizacja\n\nNowa linia na początku notatki o tokenach.\n")
    passages = all_passages(_index(tmp_path, encoder, edited))
    retired, moved = store.sync(passages)
    active = {c.card_id: c for c in store.cards("active")}
    assert gone.card_id not in active and gone.card_id in {c.card_id for c in store.cards("retired")}
    assert retired >= 1 and moved >= 1
    assert active[kept.card_id].line == kept.line + 1  # the kept line moved down by one


def test_db_is_per_notes_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_RAG_DATA", str(tmp_path / "data"))
    a, b = db_path(tmp_path / "a" / ".notes-rag"), db_path(tmp_path / "b" / ".notes-rag")
    assert a != b and a.parent == tmp_path / "data" / "quiz" and a.name.startswith("a-")


def test_apkg_is_a_zip_of_anki_tables_and_reexport_keeps_guids(tmp_path, indexed):
    _, cards = _cards(indexed)
    deck = tmp_path / "deck.apkg"
    assert export_deck(cards, deck) == len(cards)

    def notes():
        with zipfile.ZipFile(deck) as z:
            assert "collection.anki2" in z.namelist()
            (tmp_path / "col.sqlite").write_bytes(z.read("collection.anki2"))
        conn = sqlite3.connect(tmp_path / "col.sqlite")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"notes", "cards", "col", "revlog"} <= tables
        rows = conn.execute("SELECT guid, flds FROM notes ORDER BY guid").fetchall()
        conn.close()
        return rows

    first = notes()
    assert {g for g, _ in first} == {guid(c) for c in cards}
    fields = [f.split("\x1f") for _, f in first]
    assert all(f[2].startswith("tokeny.md:") and f[3] == "Tokenizacja" for f in fields)
    export_deck(cards, deck)
    assert notes() == first
    with pytest.raises(NotesRagError, match="writable"):
        export_deck(cards, tmp_path / "missing" / "deck.apkg")
    with pytest.raises(NotesRagError, match=".apkg"):
        export_deck(cards, tmp_path / "deck.zip")
