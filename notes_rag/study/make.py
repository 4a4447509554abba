"""Cards from passages: each answer span's candidate cards, best first, and the first that
passes the checks.

A span's candidates are: our GPT's question (when a question writer is given), the template
question (definitions and lists), then the cloze card. `checked_card` runs the cheap checks
(well-formed, does not give its answer away, no duplicate) and then the round trip through our
chat, and returns the first candidate that passes, with the reasons the others failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from notes_rag.study.cards import Card, content_hash
from notes_rag.study.checks import RoundTrip, duplicate_of, gives_away, round_trip, well_formed
from notes_rag.study.passages import Passage
from notes_rag.study.spans import Span, passage_spans
from notes_rag.study.templates import cloze, cloze_answer, template_question
from notes_rag.text import fold

# Which spans are asked first: a definition is what a student most needs to recall, a bare
# acronym in passing the least.
KIND_ORDER = {"definition": 0, "list": 1, "number": 2, "name": 3}
QuestionWriter = Callable[[Passage, Span], str]


def _card(p: Passage, span: Span, kind: str, question: str, answer: str, writer: str) -> Card:
    return Card(
        kind,
        span.kind,
        question,
        answer,
        p.file,
        p.line_start + span.offset,
        p.heading,
        p.lang,
        span.line,
        content_hash(p.text),
        writer,
    )


def candidates(p: Passage, span: Span, write: QuestionWriter | None = None) -> Iterator[Card]:
    """The cards that could ask about `span`, best first."""
    if write is not None and span.kind in ("definition", "list", "number", "name"):
        q = write(p, span)
        if q:
            yield _card(p, span, "question", q, span.answer, "gpt")
    q = template_question(span, p.lang)
    if q:
        yield _card(p, span, "question", q, span.answer, "template")
    blanked = cloze_answer(span)
    text = cloze(span.line, blanked, p.lang)
    if text:
        yield _card(p, span, "cloze", text, blanked, "cloze")


COMMON_NAME = 3  # a name or acronym in more passages than this is the notes' topic, not a fact


def spans_of(passages: list[Passage]) -> list[tuple[Passage, Span]]:
    """Every (passage, span) of the passages, the passages' order kept within each span kind,
    kinds in KIND_ORDER; a line in a chunk's overlap (the start of the next chunk) counts once.
    A name found in more than COMMON_NAME passages ("LLM" in notes about LLMs) is left out: a
    blank any line of the notes fills says nothing about recall."""
    out, seen = [], set()
    for p in passages:
        for s in passage_spans(p.text, p.heading_path, p.lang):
            key = (p.file, p.line_start + s.offset, s.kind, s.answer)
            if key not in seen:
                seen.add(key)
                out.append((p, s))
    texts = [fold(p.text) for p in passages]
    names = {fold(s.answer) for _, s in out if s.kind == "name"}
    common = {n for n in names if sum(f" {n} " in f" {t} " for t in texts) > COMMON_NAME}
    out = [(p, s) for p, s in out if not (s.kind == "name" and fold(s.answer) in common)]
    return sorted(out, key=lambda ps: KIND_ORDER[ps[1].kind])


@dataclass
class Checked:
    card: Card | None  # the first candidate that passed, or None
    rejected: list[tuple[Card, str]] = field(default_factory=list)  # (candidate, why it failed)
    trip: RoundTrip | None = None  # the shown card's round trip


def checked_card(
    p: Passage, span: Span, seen: dict[str, Card], assistant=None, write: QuestionWriter | None = None
) -> Checked:
    """The first candidate for `span` passing every check (the round trip only with an
    `assistant`); `seen` collects the cards so far, for the duplicate check."""
    out = Checked(None)
    for card in candidates(p, span, write):
        if not well_formed(card):
            out.rejected.append((card, "not a well-formed question"))
        elif gives_away(card):
            out.rejected.append((card, "the question contains its answer"))
        elif duplicate_of(card, dict(seen)) is not None:
            out.rejected.append((card, "duplicate"))
        else:
            trip = round_trip(card, assistant) if assistant is not None else None
            if trip is not None and not trip.passed:
                out.rejected.append(
                    (card, "round trip: " + ("source not retrieved" if trip.holds_answer else "answer not found"))
                )
                continue
            duplicate_of(card, seen)
            out.card, out.trip = card, trip
            return out
    return out
