"""Text surgery for building SFT data: passage trimming around an answer, answer clauses, slugs.

Training passages should look like our retrieval chunks (~120 words) and answers should be a
sentence (or a clause of at most ~40 words) copied from the gold passage; these helpers do both
while keeping character offsets, so the gold span can always be located in the result. Sentence
splitting and word counts are the shared rules of `notes_rag.text`.
"""

from __future__ import annotations

import re

from notes_rag.text import n_words, sentence_spans

_WORD = re.compile(r"\S+")


def trim_around(text: str, start: int, end: int, max_words: int) -> tuple[int, int]:
    """Character range of whole sentences of `text` covering [start, end), ≤ `max_words`.

    Grows from the sentence(s) holding the span, alternately backwards and forwards (earlier
    sentences first: they usually name the subject). A span whose sentences alone exceed the
    budget is cut at word boundaries around it instead.
    """
    if n_words(text) <= max_words:
        return 0, len(text)
    spans = sentence_spans(text)
    if not spans:
        return 0, len(text)
    covering = [i for i, (a, b) in enumerate(spans) if b > start and a < max(end, start + 1)]
    if not covering:
        covering = [min(range(len(spans)), key=lambda i: abs(spans[i][0] - start))]
    lo, hi = covering[0], covering[-1]
    words = sum(n_words(text[a:b]) for a, b in spans[lo : hi + 1])
    if words > max_words:
        return _cut_words(text, start, end, max_words)
    grow_back = True
    while True:
        cand = lo - 1 if grow_back else hi + 1
        if not 0 <= cand < len(spans):
            cand = hi + 1 if grow_back else lo - 1
            if not 0 <= cand < len(spans):
                break
        w = n_words(text[spans[cand][0] : spans[cand][1]])
        if words + w > max_words:
            break
        words += w
        lo, hi = min(lo, cand), max(hi, cand)
        grow_back = not grow_back
    return spans[lo][0], spans[hi][1]


def _cut_words(text: str, start: int, end: int, max_words: int) -> tuple[int, int]:
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    first = next((i for i, (a, b) in enumerate(words) if b > start), 0)
    last = next((i for i in range(len(words) - 1, -1, -1) if words[i][0] < max(end, start + 1)), first)
    spare = max(0, max_words - (last - first + 1))
    lo = max(0, first - spare // 3)
    hi = min(len(words) - 1, last + (spare - (first - lo)))
    return words[lo][0], words[hi][1]


_CLAUSE = re.compile(r"(?<=[,;:])\s+|\s+[–—-]\s+|\s+\(")


def answer_clause(text: str, start: int, end: int, max_words: int = 40) -> str:
    """The sentence of `text` holding [start, end); its clause(s) if the sentence is too long."""
    spans = sentence_spans(text)
    cover = [(a, b) for a, b in spans if b > start and a < max(end, start + 1)]
    if not cover:
        return text[start:end].strip()
    a, b = cover[0][0], cover[-1][1]
    if n_words(text[a:b]) <= max_words:
        return text[a:b]
    # split the sentence into clauses and grow around the one(s) holding the span
    cuts = [a] + [a + m.start() for m in _CLAUSE.finditer(text[a:b])] + [b]
    parts = [(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1) if cuts[i] < cuts[i + 1]]
    idx = [i for i, (x, y) in enumerate(parts) if y > start and x < max(end, start + 1)]
    if not idx:
        return text[start:end].strip()
    lo, hi = idx[0], idx[-1]
    if n_words(text[parts[lo][0] : parts[hi][1]]) > max_words:
        return text[start:end].strip()
    while True:
        grown = False
        for cand in (hi + 1, lo - 1):
            if 0 <= cand < len(parts):
                x, y = parts[min(lo, cand)][0], parts[max(hi, cand)][1]
                if n_words(text[x:y]) <= max_words:
                    lo, hi, grown = min(lo, cand), max(hi, cand), True
        if not grown:
            break
    return text[parts[lo][0] : parts[hi][1]].strip(" ,;:–—-(").strip()


def slug(title: str) -> str:
    s = re.sub(r"[^\w]+", "-", title.lower(), flags=re.UNICODE).strip("-")
    return s[:60] or "notatki"
