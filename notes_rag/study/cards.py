"""A quiz card: a question (or a cloze line) about one note line, and where that line is.

A card is keyed by its source: the passage's content hash, `file:line`, heading path and
language, plus what it asks (`card_id`). `line_hash` is the hash of the note line the answer
stands in: when the notes change, a card whose line is no longer in its file is retired
(study/store.py), one whose line only moved gets its new line number.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from notes_rag.text import fold


def content_hash(text: str) -> str:
    """A short hash of a text as folded (whitespace and case changes keep the hash)."""
    return hashlib.sha256(fold(text).encode("utf-8")).hexdigest()[:16]


@dataclass
class Card:
    kind: str  # "question" (a question is asked) or "cloze" (a key term blanked in its line)
    span: str  # the span kind: definition | list | number | name
    question: str  # what is shown: the question, or the line with the term blanked
    answer: str  # the expected answer
    file: str
    line: int  # 1-based line in the note file
    heading: str  # heading path joined with " › "
    lang: str  # pl | en, of the passage
    line_text: str  # the note line (markup removed) the answer stands in
    passage_hash: str  # content_hash of the passage (chunk) the card was made from
    writer: str = "template"  # who wrote the question: "template" | "gpt" | "cloze"

    @property
    def line_hash(self) -> str:
        return content_hash(self.line_text)

    @property
    def card_id(self) -> str:
        """Stable id: the same question about the same line of the same file is the same card
        (re-running a quiz or an export finds it again)."""
        key = "\x1f".join([self.file, self.line_hash, self.lang, self.kind, fold(self.answer)])
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]

    @property
    def place(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict:
        return {**asdict(self), "id": self.card_id, "place": self.place}

    @classmethod
    def from_dict(cls, d: dict) -> Card:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})
