"""Study mode cards: answer spans, template and cloze cards, and the cheap quality checks."""

from __future__ import annotations

from notes_rag.study.cards import Card, content_hash
from notes_rag.study.checks import duplicate_of, gives_away, well_formed
from notes_rag.study.make import candidates, spans_of
from notes_rag.study.passages import Passage
from notes_rag.study.spans import passage_spans
from notes_rag.study.templates import BLANK, cloze, template_question

PL = """# Tokenizacja

## Słownik

Słownik to tabela odwzorowań, która przypisuje tokenom identyfikatory.
W 1943 roku Warren McCulloch i Walter Pitts zaproponowali matematyczny model neuronu.
Krótki tytuł slajdu
Fazy treningu modelu:
- pretrening
- dostrajanie
- RLHF
"""
EN = """# Models

Open-source models are models that anyone can download, inspect and run.
They are very large.
GPT-3 has 175 billion parameters and a context of 2048 tokens.
"""


def _spans(text, lang, heading=("Tokenizacja", "Słownik")):
    return {(s.kind, s.answer) for s in passage_spans(text, heading, lang)}


def test_spans_of_definitions_names_numbers_and_lists():
    pl = _spans(PL, "pl")
    assert ("definition", "tabela odwzorowań") in pl
    assert ("number", "1943 roku") in pl
    assert ("list", "pretrening, dostrajanie, RLHF") in pl
    en = _spans(EN, "en", ("Models",))
    assert ("definition", "models that anyone can download, inspect and run") in en
    assert any(kind == "number" and answer.startswith("175") for kind, answer in en)


def test_headings_fragments_and_pronoun_definitions_are_never_asked():
    answers = {a for _, a in _spans(PL, "pl") | _spans(EN, "en", ("Models",))}
    assert not any("Tokenizacja" == a or "Słownik" == a for a in answers)
    assert not any("Krótki tytuł" in a for a in answers)
    assert "very large" not in answers  # "They are very large": no term, no definition
    code = "```\nx = model is here and now fine\n```\n"
    assert passage_spans(code, (), "en") == []


def test_template_questions_in_the_passage_language():
    spans = {s.kind + s.answer: s for s in passage_spans(PL, ("Słownik",), "pl")}
    assert template_question(spans["definitiontabela odwzorowań"], "pl") == "Czym jest słownik?"
    assert template_question(spans["listpretrening, dostrajanie, RLHF"], "pl") == "Wymień: fazy treningu modelu."
    en = [s for s in passage_spans(EN, ("Models",), "en") if s.kind == "definition"][0]
    assert template_question(en, "en") == "What are open-source models?"


def test_cloze_blanks_the_term_once():
    text = cloze("W 1943 roku Warren McCulloch i Walter Pitts zaproponowali model neuronu.", "1943 roku", "pl")
    assert text.startswith("Uzupełnij lukę: ") and text.count(BLANK) == 1 and "1943" not in text
    assert cloze("model i model", "model", "pl") is None  # twice: ambiguous


def _card(question, answer, kind="question", lang="pl"):
    return Card(kind, "definition", question, answer, "a.md", 3, "A", lang, "line text here", "h")


def test_checks_reject_giveaways_malformed_and_duplicates():
    assert gives_away(_card("Czym jest tabela odwzorowań?", "tabela odwzorowań"))
    assert not gives_away(_card("Czym jest słownik?", "tabela odwzorowań"))
    assert not well_formed(_card("# Słownik", "x"))
    assert not well_formed(_card("słownik tabela", "x"))
    assert not well_formed(_card("What is a dictionary?", "x", lang="pl"))  # not the passage's language
    assert well_formed(_card("Czym jest słownik?", "tabela odwzorowań"))
    seen = {}
    a, b = _card("Czym jest słownik?", "tabela"), _card("Czym jest słownik?", "tabela")
    assert duplicate_of(a, seen) is None and duplicate_of(b, seen) is a


def test_cards_are_keyed_by_their_source():
    p = Passage(1, "notes/pl.md", 10, ("Tokenizacja", "Słownik"), PL, "pl")
    cards = [c for _, s in spans_of([p]) for c in candidates(p, s)]
    definition = next(c for c in cards if c.span == "definition" and c.kind == "question")
    assert definition.place == "notes/pl.md:14" and definition.heading == "Tokenizacja › Słownik"
    assert definition.passage_hash == content_hash(PL) and definition.lang == "pl"
    again = [c for _, s in spans_of([p]) for c in candidates(p, s)]
    assert [c.card_id for c in cards] == [c.card_id for c in again]
    assert len({c.card_id for c in cards}) == len(cards)
