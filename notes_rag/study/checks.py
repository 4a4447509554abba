"""Quality checks a card passes before it is shown.

- `well_formed`: a question card is one question (ends with "?", or is a "List:"/"Wymień:"
  prompt), of 3-30 words, opening with a question word or a capital, in its passage's language,
  and not a bare heading; a cloze card holds exactly one blank in a line of 6+ other words.
- `gives_away`: the question contains its answer (the folded answer is in it, or it holds at
  least `GIVE_AWAY_SHARE` of the answer's key terms).
- `duplicate_of`: the same question, or the same answer about the same line, as a card before.
- `round_trip`: our own chat (chat/assistant.py, the default answer path) answers the question
  from the notes, its answer holds the card's answer (key terms, study/grading.py) and the card's
  source line is in a retrieved passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from notes_rag.lang import detect_lang
from notes_rag.study.cards import Card
from notes_rag.study.grading import key_share, numbers_match
from notes_rag.study.templates import BLANK, CLOZE_PROMPT, MIN_CLOZE_WORDS
from notes_rag.text import fold, words

GIVE_AWAY_SHARE = 0.8
ROUND_TRIP_SHARE = 0.6  # of the card answer's key terms the chat's answer must hold
_OPENERS = {
    "en": "what which who whom whose when where why how in on at by for from to is are was were does do did can "
    "name list according",
    "pl": "co czym czego kto kogo komu kim kiedy gdzie dlaczego czemu jak jaki jaka jakie jakich jakim jakiej "
    "ile który która które którego której którym w we na z ze do od o po przez przy dla czy wymień podaj",
}


def well_formed(card: Card) -> bool:
    q = card.question.strip()
    if card.kind == "cloze":
        body = q.split(": ", 1)[-1]
        return q.count(BLANK) == 1 and len(words(body.replace(BLANK, " "))) >= MIN_CLOZE_WORDS
    n = len(words(q))
    if not 3 <= n <= 30 or q.startswith("#") or q.count("?") > 1:
        return False
    if not (q.endswith("?") or q.startswith(("List:", "Wymień:"))):
        return False
    first = fold(q.split()[0]).strip("¿,.:")
    if first not in _OPENERS.get(card.lang, "").split() and not q[:1].isupper():
        return False
    return detect_lang(q, default=card.lang) == card.lang


def gives_away(card: Card) -> bool:
    shown = card.question.replace(BLANK, " ")
    for prompt in CLOZE_PROMPT.values():
        shown = shown.removeprefix(prompt)
    if fold(card.answer) in fold(shown):
        return True
    share, _ = key_share(shown, card.answer)
    return share >= GIVE_AWAY_SHARE and numbers_match(shown, card.answer)


def duplicate_of(card: Card, seen: dict[str, Card]) -> Card | None:
    """The earlier card this one repeats (keys are added to `seen` when it is new)."""
    keys = ["q:" + fold(card.question), f"a:{card.file}:{card.line_hash}:{fold(card.answer)}"]
    for key in keys:
        if key in seen:
            return seen[key]
    for key in keys:
        seen[key] = card
    return None


@dataclass
class RoundTrip:
    passed: bool
    answer: str  # what our chat answered
    holds_answer: bool
    source_retrieved: bool
    answered_by: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _source_in(card: Card, sources) -> bool:
    return any(s.file == card.file and s.line_start <= card.line <= s.line_end for s in sources)


def round_trip(card: Card, assistant) -> RoundTrip:
    """Ask our chat the card's question (a cloze: its line with the blank) from the notes."""
    answer = assistant.ask([], card.question)
    text = re.sub(r"\[\d+\]", " ", answer.text)
    share, _ = key_share(text, card.answer)
    holds = not answer.abstained and (fold(card.answer) in fold(text) or share >= ROUND_TRIP_SHARE)
    holds = holds and numbers_match(text, card.answer)
    retrieved = _source_in(card, answer.sources)
    return RoundTrip(holds and retrieved, answer.text, holds, retrieved, answer.answered_by)
