"""Anki export: the checked cards as an .apkg deck, written with `genanki`.

Each note has the fields Question, Answer, Source (`file:line`), Heading and Line (the note line
the answer stands in); the back shows the answer with its source. The model and deck ids are
fixed numbers and each note's GUID is `genanki.guid_for(card id)`, so re-exporting the same notes
updates the cards already in Anki instead of adding duplicates (Anki matches notes by GUID).
The deck is written to a temporary file next to the target and renamed over it.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.study.cards import Card

# Fixed ids (random once, never changed): a new id would make Anki see a different note type.
MODEL_ID = 1_735_600_251
DECK_ID = 1_735_600_252
FIELDS = ("Question", "Answer", "Source", "Heading", "Line")
_CSS = ".card { font-family: sans-serif; font-size: 20px; } .src { color: #777; font-size: 14px; }"


def _model():
    import genanki

    return genanki.Model(
        MODEL_ID,
        "notes-rag quiz card",
        fields=[{"name": f} for f in FIELDS],
        templates=[
            {
                "name": "Card",
                "qfmt": "{{Question}}",
                "afmt": '{{FrontSide}}<hr id="answer">{{Answer}}<div class="src">{{Source}} · {{Heading}}'
                "<br>{{Line}}</div>",
            }
        ],
        css=_CSS,
    )


def guid(card: Card) -> str:
    import genanki

    return genanki.guid_for("notes-rag", card.card_id)


def _note(model, card: Card):
    import genanki

    fields = [card.question, card.answer, card.place, card.heading or "–", card.line_text]
    tags = ["notes-rag", card.lang, card.span, card.kind]
    return genanki.Note(model=model, fields=[html.escape(f) for f in fields], tags=tags, guid=guid(card))


def export_deck(cards: list[Card], path: Path, name: str = "notes-rag") -> int:
    """Write `cards` to the .apkg at `path`; the number of notes written."""
    import genanki

    path = Path(path)
    if path.suffix != ".apkg":
        raise NotesRagError(f"the export path must end in .apkg, got {path}")
    if not cards:
        raise NotesRagError("no cards to export: no checked card came from these notes")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise NotesRagError(f"cannot write {path}: {folder} is not a writable folder")
    model = _model()
    deck = genanki.Deck(DECK_ID, name)
    for card in cards:
        deck.add_note(_note(model, card))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".apkg", dir=folder)
    os.close(fd)
    try:
        genanki.Package(deck).write_to_file(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise NotesRagError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(cards)
