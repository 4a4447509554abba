"""The reader's reply: what the user reads, built from the heads' reading (model/reader.py).

Grounded by construction: the reply quotes the chosen sentence of the cited passage (trimmed to
the clause around the span when the sentence is long), so every quoted word is in the passage
the citation names. Cases, in the question's language:

- no-answer wins (its probability reaches `abstain_at`):  "Nie znalazłem tego w notatkach."
- yes/no:   "Tak — {sentence} [n]" / "Nie — …" / "Yes — …" / "No — …"
- span:     "{sentence} [n]", with the span's character range reported for highlighting.

The span is reported, not written into the text (no ``**bold**``), so scripts and the key-fact
matching of `notes-rag eval` see the note's words unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from notes_rag.chat.format import ABSTAIN
from notes_rag.model.reader import Reading
from notes_rag.sft.clauses import answer_clause
from notes_rag.text import n_words, sentence_spans

YES_NO = {"pl": {"yes": "Tak — ", "no": "Nie — "}, "en": {"yes": "Yes — ", "no": "No — "}}
MAX_QUOTE_WORDS = 40  # a longer sentence is cut to the clause(s) around the span
# markdown a quote should not start with: list bullets, heading hashes, block quotes
_LEAD = re.compile(r"^\s*(?:[-*+>#]+\s+|\d+[.)]\s+)+")


@dataclass
class Reply:
    text: str
    cited: list[int]  # passage numbers (1-based)
    span: tuple[int, int] | None  # character range of the answer span inside `text`
    abstained: bool
    kind: str  # "span" | "yes" | "no" | "none"


def lead_in_end(passage: str, end: int) -> int:
    """Where a line ending with a colon ("Zalety:", "the three kinds are:") stops being quoted:
    after the lines it introduces, up to MAX_QUOTE_WORDS words in all, before any heading."""
    spans = [(a, b) for a, b in sentence_spans(passage) if a >= end]
    total = n_words(passage[:end].rsplit("\n", 1)[-1])
    for a, b in spans:
        piece = passage[a:b]
        total += n_words(piece)
        if piece.lstrip().startswith("#") or total > MAX_QUOTE_WORDS:
            break
        end = b
    return end


def quote(passage: str, start: int, end: int, span: tuple[int, int] | None) -> tuple[str, tuple[int, int] | None]:
    """The sentence passage[start:end] as one line (clause-trimmed when long; a lead-in ending
    with a colon takes the lines it introduces) and the span's range inside it."""
    if passage[start:end].rstrip().endswith(":"):
        end = lead_in_end(passage, end)
    text = passage[start:end]
    if n_words(text) > MAX_QUOTE_WORDS and span is not None:
        clause = answer_clause(passage, span[0], span[1], MAX_QUOTE_WORDS)
        at = passage.find(clause, max(0, start - 1))
        if at >= 0:
            start, end, text = at, at + len(clause), clause
    lead = _LEAD.match(text)
    if lead:
        start += lead.end()
        text = text[lead.end() :]
    flat = " ".join(text.split())
    if span is None or not (start <= span[0] < span[1] <= end):
        return flat, None
    # the span's position in the whitespace-collapsed text
    before = " ".join(passage[start : span[0]].split())
    inner = " ".join(passage[span[0] : span[1]].split())
    if not inner:
        return flat, None
    pos = flat.find(inner, max(0, len(before) - 1))
    return flat, (pos, pos + len(inner)) if pos >= 0 else None


def compose(reading: Reading, passages: list[str], lang: str, abstain_at: float) -> Reply:
    """The reply to show for a reading of these passages (texts in passage-number order)."""
    lang = lang if lang in ABSTAIN else "en"
    if reading.unit is None or reading.no_answer >= abstain_at:
        return Reply(ABSTAIN[lang], [], None, True, "none")
    unit = reading.unit
    text, span = quote(passages[unit.passage - 1], unit.start, unit.end, reading.span)
    if not text:
        return Reply(ABSTAIN[lang], [], None, True, "none")
    prefix = YES_NO[lang].get(reading.kind, "")
    if span is not None:
        span = (span[0] + len(prefix), span[1] + len(prefix))
    return Reply(f"{prefix}{text} [{unit.passage}]", [unit.passage], span, False, reading.kind)
