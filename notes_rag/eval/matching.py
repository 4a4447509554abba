"""The matching rules of `notes-rag eval`: key facts in an answer, evidence in a chunk.

Documented for users in docs/EVAL.md ("Matching rules"); in short:
- text is *folded* before any comparison (`notes_rag.text.fold`: case, diacritics, whitespace);
  key facts match as substrings of the folded answer.
- evidence is compared as a sequence of folded *words* (`notes_rag.text.words`). A chunk
  *contains* the evidence when the evidence's words occur in it contiguously. Evidence that
  straddles a chunk boundary leaves a prefix of its words at the end of one chunk and a suffix at
  the start of the next (after the heading path, when the chunk text opens with one). So a chunk
  also counts as a hit when it ends with a prefix, or has a line starting with a suffix, of the
  evidence's words covering at least `PARTIAL_SHARE` of them and at least `MIN_PARTIAL_WORDS`
  words. Runs elsewhere, or of one or two common words, would be coincidences (a book title
  repeated in another note), not the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

from notes_rag.text import fold, line_word_starts, words

# Retrieval is scored to this depth (MRR@10).
RETRIEVAL_DEPTH = 10
# A straddling evidence needs this share of its words in one chunk, as a prefix or a suffix ...
PARTIAL_SHARE = 0.6
# ... and at least this many words: "embedding vectors" alone occurs in half the notes.
MIN_PARTIAL_WORDS = 3


def group_passes(answer: str, group: list[str]) -> bool:
    folded = fold(answer)
    return any(fold(alt) in folded for alt in group)


def score_groups(answer: str, must: list[list[str]]) -> list[bool]:
    return [group_passes(answer, g) for g in must]


def _contains_run(hay: list[str], run: list[str]) -> bool:
    n = len(run)
    return any(hay[i : i + n] == run for i in range(len(hay) - n + 1))


def evidence_coverage(evidence: str, chunk: str) -> float:
    """Share of the evidence's words that `chunk` holds: 1.0 when it contains them contiguously;
    else the longest run of at least `MIN_PARTIAL_WORDS` words that is a prefix of the evidence
    ending the chunk, or a suffix of the evidence starting one of its lines (the body may follow
    a heading path); else 0. Only such edge runs count: that is how a chunk boundary cuts it."""
    ev, hay = words(evidence), words(chunk)
    if not ev:
        return 0.0
    if _contains_run(hay, ev):
        return 1.0
    starts = line_word_starts(chunk)
    for n in range(min(len(ev), len(hay) + 1) - 1, MIN_PARTIAL_WORDS - 1, -1):
        suffix = ev[-n:]
        if hay[-n:] == ev[:n] or any(hay[i : i + n] == suffix for i in starts):
            return n / len(ev)
    return 0.0


def is_hit(evidence: str, chunk: str) -> bool:
    """A retrieved chunk counts as a hit when it holds the evidence, or ≥60% of a straddling one."""
    # The epsilon keeps exact shares such as 3/5 from failing on float rounding.
    return evidence_coverage(evidence, chunk) >= PARTIAL_SHARE - 1e-9


def first_hit_rank(evidence: str, chunks: list[str], depth: int = RETRIEVAL_DEPTH) -> int | None:
    """1-based rank of the first chunk that is a hit, within `depth`; None if there is none."""
    for rank, chunk in enumerate(chunks[:depth], start=1):
        if is_hit(evidence, chunk):
            return rank
    return None


def evidence_files(evidence: str, chunks: Iterable[tuple[str, str]]) -> list[str]:
    """Files (in first-seen order) whose chunks hold the evidence, by the same hit rule."""
    found: list[str] = []
    for file, text in chunks:
        if file not in found and is_hit(evidence, text):
            found.append(file)
    return found
