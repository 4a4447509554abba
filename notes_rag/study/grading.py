"""Grading a typed answer against a card's expected answer.

Two signals, then a suggested FSRS rating that the student may override:

- *key terms*: the expected answer's content words as 5-letter folded stems (text.stems, the one
  stem rule), less the ones the question itself gives away. A typed stem matches a key stem when
  they share their first 4 letters and differ at most in the last: Polish inflection changes
  endings ("sieć"/"sieci" fold to "siec"/"sieci", "pusta"/"pustej" stem to "pusta"/"puste").
  Numbers must match exactly: "1943" is no "1944".
- *meaning*: the cosine of the typed answer to the expected one under the index's encoder
  (`Retriever.similarity`), which accepts a paraphrase that shares few words.

Accepted when enough key terms match (`GradeConfig.key_share`), or the meaning is close and some
key term matches, or the meaning is very close. The suggested rating: Again when rejected, Good
when accepted by all key terms or the meaning, Hard when accepted with key terms missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from notes_rag.study.config import GradeConfig
from notes_rag.text import STEM, fold, stems, words

RATINGS = ("again", "hard", "good", "easy")  # FSRS ratings 1-4, in order
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
# Words that carry no fact: an answer need not repeat them and a typed one gets no credit for them.
_FILLER = frozenset(
    fold(w)
    for w in """
    the and for with that this are was were from into which such also their its can has have
    oraz jest są się przez który która które jako dla jego jej ich tym tego także czyli albo
    """.split()
)


@dataclass
class Grade:
    accepted: bool
    rating: str  # suggested: again | hard | good | easy
    key_share: float  # share of the key terms the typed answer holds
    similarity: float | None  # encoder cosine to the expected answer (None: not computed)
    missing: list[str]  # key words of the expected answer the typed one lacks


def _key_words(answer: str, question: str) -> dict[str, str]:
    """The expected answer's key stems -> a word showing each; stems the question holds are no
    evidence of recall, unless that leaves none."""
    given = stems(question)
    keys: dict[str, str] = {}
    for w in words(answer):
        if len(w) < 3 or w in _FILLER or w.isdigit():
            continue
        keys.setdefault(w[:STEM], w)
    own = {s: w for s, w in keys.items() if s not in given}
    return own or keys


def stem_match(a: str, b: str) -> bool:
    """Two stems are the same word: equal, or sharing their first 4 letters (at most their last
    letter differs): "siec"/"sieci", "pusta"/"puste" (pusta/pustej), "model"/"modelu"."""
    if a == b:
        return True
    common = len(os.path.commonprefix([a, b]))
    return common >= 4 and common >= min(len(a), len(b)) - 1


def key_share(typed: str, answer: str, question: str = "") -> tuple[float, list[str]]:
    """(share of the answer's key terms the typed answer holds, the missing key words)."""
    keys = _key_words(answer, question)
    have = stems(typed)
    missing = [w for s, w in keys.items() if not any(stem_match(s, t) for t in have)]
    return (1.0 - len(missing) / len(keys) if keys else 0.0), missing


def numbers_match(typed: str, answer: str) -> bool:
    """Every number of the expected answer is in the typed one (none: trivially true)."""
    want = {n.replace(",", ".") for n in _NUMBER.findall(answer)}
    have = {n.replace(",", ".") for n in _NUMBER.findall(typed)}
    return want <= have


def grade(
    typed: str,
    answer: str,
    question: str = "",
    similarity: Callable[[str, list[str]], object] | None = None,
    cfg: GradeConfig = GradeConfig(),
) -> Grade:
    """Grade `typed` against the expected `answer`; `similarity(query, texts)` is the encoder's
    cosine (Retriever.similarity), None to grade by key terms alone."""
    typed = typed.strip()
    share, missing = key_share(typed, answer, question)
    if not typed or not words(typed) or not numbers_match(typed, answer):
        return Grade(False, "again", share, None, missing)
    if fold(answer) in fold(typed) and len(words(typed)) <= 3 * len(words(answer)) + 3:
        return Grade(True, "good", 1.0, None, [])
    sim = None
    if similarity is not None and share < 1.0:
        sim = float(similarity(typed, [answer])[0])
    accepted = share >= cfg.key_share
    by_meaning = sim is not None and ((share > 0 and sim >= cfg.sim_with_term) or sim >= cfg.sim_alone)
    if not accepted and not by_meaning:
        return Grade(False, "again", share, sim, missing)
    rating = "good" if share >= 1.0 or (by_meaning and share >= cfg.key_share) else "hard"
    if by_meaning and not accepted:
        rating = "good" if sim >= cfg.sim_alone else "hard"
    return Grade(True, rating, share, sim, missing)


def parse_override(text: str) -> str | None:
    """'1'-'4' or a rating's name or first letter -> the rating; None for anything else."""
    t = text.strip().lower()
    if t in ("1", "2", "3", "4"):
        return RATINGS[int(t) - 1]
    for r in RATINGS:
        if t in (r, r[0]):
            return r
    return None
