"""The quote: the passage sentence (or short run of slide lines) that answers a question best by
meaning. Shown in place of a generated answer the passages do not support, and scored as
`notes-rag eval`'s extractive baseline.

Word overlap alone quotes the neighbour of the answer ("BPE algorithm search for library
complicated to implement" for "What does BPE do with unknown words?": both name BPE). Each
candidate is scored by the retrieval encoder's cosine to the question, plus a little lexical
overlap (the share of the question's word stems it holds: names and numbers the encoder blurs),
minus a small penalty per retrieval rank:

    score = cosine(question, candidate) + lexical_weight * stem share - rank_penalty * rank

Candidates are the sentences of the top `passages` passages and windows of `window_lines`
consecutive lines, since slide notes put one fact over two short lines ("batch-size" /
"* small batch sizes require less memory"). Headings are left out: they echo the question's
topic without answering it. On the dev questions (docs/CHAT.md) this lifts the baseline's
key-fact recall from 0.27 to 0.45; encoding 10–30 short candidates costs ~0.1–0.3 s on two cores.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from notes_rag.text import chunk_sentences, stems, words

_MARKER = re.compile(r"^\s*(?:>\s*)*(?:[*+-]|\d+[.)])\s+|^\s*>\s*")
# (question, candidate texts) -> the candidates' cosines to the question
Similarity = Callable[[str, list[str]], np.ndarray]


@dataclass(frozen=True)
class QuoteConfig:
    # Only the top passage: retrieval ranks passages better than sentence scores compare across
    # them (dev key facts 0.50 from the top passage vs 0.46 from the top three).
    passages: int = 1
    window_lines: int = 2
    lexical_weight: float = 0.1
    rank_penalty: float = 0.01
    # Only this many candidates, the most question words first, are encoded: a slide passage has
    # 20-60 sentences and windows; on dev, 8 / 12 / 20 give the same key facts (0.43) at answer
    # p50 0.30 / 0.40 / 0.63 s on two cores.
    max_candidates: int = 8


def _line(line: str) -> str:
    """A note line as a quote shows it: without its list or blockquote marker ("* ", "1. ", "> ")."""
    return _MARKER.sub("", line).strip()


def _joined(a: tuple[str, bool], b: tuple[str, bool]) -> str:
    """Two lines as one quote: a sentence running on over the line break joins with a space,
    anything else (list items, a new line of a slide) with " · "."""
    (text, _), (nxt, item) = a, b
    runs_on = not item and text[-1:].isalnum() and nxt[:1].islower()
    return text + (" " if runs_on else " · ")


def candidates(text: str, window_lines: int) -> list[str]:
    """A passage's sentences, then its windows of `window_lines` consecutive content lines, list
    and blockquote markers left out ("* Koszty" / "* GPT-3 - 5M USD" -> "Koszty · GPT-3 - 5M USD")."""
    lines = [
        (_line(line), bool(_MARKER.match(line)))
        for line in text.splitlines()
        if words(line) and not line.lstrip().startswith("#")
    ]
    lines = [(t, item) for t, item in lines if any(ch.isalpha() for ch in t)]
    windows = []
    for i in range(len(lines) - window_lines + 1):
        run = lines[i : i + window_lines]
        windows.append("".join(_joined(a, b) for a, b in zip(run, run[1:])) + run[-1][0])
    sentences = [s for s in map(_line, chunk_sentences(text)) if any(ch.isalpha() for ch in s)]
    return list(dict.fromkeys(sentences + (windows if window_lines > 1 else [])))


def best_quote(
    question: str, passages: list[str], similarity: Similarity | None, cfg: QuoteConfig = QuoteConfig()
) -> tuple[str, int] | None:
    """(quote, 1-based passage number) of the best candidate; None when the passages have no
    sentence. Without `similarity` (no encoder at hand) the lexical score decides alone."""
    found = [(n, c) for n, text in enumerate(passages[: cfg.passages], 1) for c in candidates(text, cfg.window_lines)]
    if not found:
        return None
    q = stems(question)
    lexical = np.array([len(q & stems(c)) / max(1, len(q)) for _, c in found])
    keep = np.sort(np.argsort(-lexical, kind="stable")[: cfg.max_candidates])
    found, lexical = [found[i] for i in keep], lexical[keep]
    texts = [c for _, c in found]
    rank = np.array([n - 1 for n, _ in found], dtype=float)
    cosine = np.asarray(similarity(question, texts), dtype=float) if similarity is not None else 0.0
    best = int(np.argmax(cosine + cfg.lexical_weight * lexical - cfg.rank_penalty * rank))
    return texts[best], found[best][0]


def cited_quote(
    question: str, passages: list[str], similarity: Similarity | None, cfg: QuoteConfig = QuoteConfig()
) -> str:
    """The best quote with its citation ("... [1]"); "" when there is none."""
    found = best_quote(question, passages, similarity, cfg)
    return f"{found[0]} [{found[1]}]" if found else ""
