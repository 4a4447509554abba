"""The grounding guard: may a generated answer be shown as it is?

Our GPT writes fluent text that can be unrelated to the notes, or loop ("the model of the model
of the model..."). Generated text is shown only when it passes every check here; otherwise the
assistant quotes the notes instead (`chat.quote`), and nothing unchecked reaches the screen.
A non-abstaining answer must

1. cite a passage it was given ("[2]"): an uncited answer cannot be checked by the user;
2. hold mostly words of the passages it cites: at least `min_grounding` of its content words
   (3+ letters, folded) occur in them — common words alone cannot pass a check against one
   passage as easily as against all of them together;
3. not loop: no word 4-gram occurs `LOOP_REPEATS` times, and an answer of 12+ words uses at least
   `MIN_DISTINCT` distinct words per word.

    problem(text, passages, 0.6)     # None when it may be shown, else the reason
"""

from __future__ import annotations

from notes_rag.chat.format import extract_citations, strip_citations
from notes_rag.text import words

LOOP_N, LOOP_REPEATS = 4, 3
MIN_DISTINCT = 0.4


def grounding(answer: str, passages: list[str]) -> float:
    """Share of the answer's content words (3+ letters, folded) that occur in the passages."""
    content = [w for w in words(strip_citations(answer)) if len(w) >= 3]
    if not content:
        return 0.0
    vocab = {w for p in passages for w in words(p)}
    return sum(w in vocab for w in content) / len(content)


def loops(answer: str) -> bool:
    """True when the answer repeats itself: a word 4-gram three times, or few distinct words."""
    ws = words(strip_citations(answer))
    grams: dict[tuple[str, ...], int] = {}
    for i in range(len(ws) - LOOP_N + 1):
        g = tuple(ws[i : i + LOOP_N])
        grams[g] = grams.get(g, 0) + 1
        if grams[g] >= LOOP_REPEATS:
            return True
    return len(ws) >= 12 and len(set(ws)) / len(ws) < MIN_DISTINCT


def problem(answer: str, passages: list[str], min_grounding: float) -> str | None:
    """Why a non-abstaining generated answer may not be shown ("uncited", "ungrounded",
    "loop"), or None. `passages` are those the model was given, in prompt order."""
    cited = [c for c in extract_citations(answer) if 1 <= c <= len(passages)]
    if not cited:
        return "uncited"
    if loops(answer):
        return "loop"
    if grounding(answer, [passages[c - 1] for c in cited]) < min_grounding:
        return "ungrounded"
    return None
