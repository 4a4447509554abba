"""Our GPT writes the answer: its input over the top passages, a constrained copy decode that
streams only text that stands, and the citation.

The input is the model input (model/reader.py `encode`): the system prompt, the previous question,
the question, then the passages, with match flags on the passage words the question names, and
`<|assistant|>`. The copy-head model (model/copy_head.py) decodes greedily under a
`WordConstraint` (model/constraint.py): every content word it writes occurs in the passages or
the question, so no check after the fact has anything to retract; and, with `whole_units`, under
model/unit_copy.py's rule: a copy starts where the unit the model points at starts and runs to
that unit's end (answers are whole note lines, not their tails). Decoding also stops, before
the token that would do it, when the answer would exceed `max_words` or repeat a run of
`LOOP_WORDS` words, and after an abstention sentence.

Abstention is the model's: it writes the abstention sentence when the passages it read do not
answer. Its no-answer score is the first step's log-odds of the abstention's first token against
the best other token (`Written.no_answer`); `abstain_bias` is added to that token's
log-probability before decoding, calibrated on held-out data (AnswerConfig.abstain_bias).

An answer that cites nothing gets the passage holding most of its words appended as `[n]`
(appended, so the streamed text stands); an empty answer is the caller's abstention.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from notes_rag.chat.format import ABSTAIN, extract_citations, is_abstention
from notes_rag.errors import NotesRagError
from notes_rag.model.numpy_gpt import NumpyGPT
from notes_rag.model.reader import ReaderInput, copy_sources
from notes_rag.model.tokenizer import SPECIAL_TOKENS, Tokenizer
from notes_rag.text import words

if TYPE_CHECKING:  # torch loads only to write an answer: the no-answer score runs without it
    import torch

    from notes_rag.model.sampling import SamplingConfig

LOOP_WORDS = 4  # a run of this many words written twice is a loop: stop before the second ends


@dataclass
class Written:
    """The generated answer and how it went."""

    text: str
    abstained: bool
    ttft: float  # question to first token
    tokens_per_s: float | None
    new_tokens: int
    passages: int  # passages that fit the input (the first ones)
    no_answer: float | None = None  # first-step log-odds of the abstention start (before the bias)


def _stops(tok: Tokenizer, ids: Iterator[int], max_words: int) -> Iterator[int]:
    """`ids` until the answer would pass `max_words` words or repeat a LOOP_WORDS-word run, or
    once it is an abstention (nothing may follow it, not even a citation)."""
    out: list[int] = []
    so_far = ""
    for i in ids:
        if is_abstention(so_far) and so_far.rstrip().endswith("."):
            return
        text = tok.decode([*out, i])
        ws = words(text)
        if len(ws) > max_words:
            return
        runs = [tuple(ws[j : j + LOOP_WORDS]) for j in range(len(ws) - LOOP_WORDS + 1)]
        if runs and runs[-1] in runs[:-1]:
            return
        out.append(i)
        so_far = text
        yield i


def abstention_starts(tok: Tokenizer) -> list[int]:
    """The first tokens of the abstention sentences."""
    return sorted({tok.encode(text)[0] for text in ABSTAIN.values()})


def abstention_margin(tok: Tokenizer, logp: torch.Tensor | np.ndarray) -> float:
    """The no-answer score of a first step: log-odds of an abstention start against the best
    other token."""
    starts = abstention_starts(tok)
    logp = np.asarray(logp, dtype=np.float32)  # the torch model's tensor or the numpy model's array
    others = logp.copy()
    others[starts] = float("-inf")
    return float(logp[starts].max() - others.max())


def no_answer_score(model, tok: Tokenizer, inp: ReaderInput) -> float:
    """The model's no-answer score for this input without writing the answer: one prefill, by
    the numpy model when the chat loaded it (model/numpy_gpt.py), else by the torch one."""
    specials = {tok.special(s) for s in SPECIAL_TOKENS}
    mask = copy_sources(inp.ids, specials)
    if isinstance(model, NumpyGPT):
        return abstention_margin(tok, model.first_logprobs(inp.ids, mask, inp.match))
    from notes_rag.model.engine import CopyDecoder

    return abstention_margin(tok, CopyDecoder(model, inp.ids, mask, inp.match).prefill())


def best_citation(text: str, passages: list[str]) -> int:
    """The passage (1-based) holding the most of the answer's words."""
    have = set(words(text))
    return 1 + max(range(len(passages)), key=lambda p: (len(have & set(words(passages[p]))), -p))


def write(
    model,
    tok: Tokenizer,
    inp: ReaderInput,
    passages: list[tuple[str, str]],
    questions: list[str],
    sampling: SamplingConfig,
    max_words: int,
    t0: float,
    constrain: bool = True,
    abstain_bias: float = 0.0,
    whole_units: bool = True,
    unit_prior: list[list[float]] | None = None,
    prior_weight: float = 0.0,
) -> Generator[str, None, Written]:
    """Yield the answer's text pieces as they are decoded; return the `Written` answer.
    `passages` are `inp`'s (label, text) passages, in its numbering, `questions` the question and
    the earlier one(s) it holds: their words are the ones the answer may use (not the system
    prompt's)."""
    from notes_rag.model import numpy_decode
    from notes_rag.model.constraint import WordConstraint
    from notes_rag.model.sampling import stream_text

    if isinstance(model, NumpyGPT):  # the chat's path: no torch import
        generate_copy = numpy_decode.generate_copy
    else:
        from notes_rag.model import engine

        generate_copy = engine.generate_copy

    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    copy_mask = copy_sources(inp.ids, set(specials))
    texts = [text for _, text in passages]
    sources = [*texts, *(label for label, _ in passages), *questions]
    constraint = (
        WordConstraint.for_sources(tok, sources, fixed=ABSTAIN.values(), stop_ids=specials) if constrain else None
    )
    if whole_units:
        from notes_rag.model.unit_copy import UnitCopy, prior_by_unit

        opens = {tok.encode(s)[-1] for s in ("[", " [")}  # the token that writes the bracket
        numbers = {p: ids[0] for p in range(1, inp.passages + 1) if len(ids := tok.encode(str(p))) == 1}
        prior = prior_by_unit(passages, unit_prior) if unit_prior is not None and prior_weight else None
        constraint = UnitCopy(
            tok.token_bytes, inp, constraint, abstention_starts(tok), specials, opens, numbers, prior, prior_weight
        )
    times: list[float] = []
    score: list[float] = []

    def no_answer(logp: torch.Tensor) -> torch.Tensor:
        score.append(abstention_margin(tok, logp))
        if not math.isfinite(score[-1]):  # before the first token: nothing computed on NaN is shown
            where = getattr(model, "folder", None) or "in use"
            raise NotesRagError(f"the model {where} computed NaN or inf: damaged weights (notes-rag doctor)")
        if abstain_bias:
            logp = logp.clone() if hasattr(logp, "clone") else logp.copy()
            logp[abstention_starts(tok)] += abstain_bias
        return logp

    def timed(ids: Iterator[int]) -> Iterator[int]:
        for i in ids:
            times.append(time.perf_counter())
            yield i

    ids = generate_copy(
        model, inp.ids, copy_mask, inp.match, sampling, stop_ids=specials, constraint=constraint, on_first=no_answer
    )
    pieces = []
    for piece in stream_text(tok.token_bytes, timed(_stops(tok, ids, max_words))):
        if not pieces:  # answers may start with a space, copied as the passage has the word
            piece = piece.lstrip()
            if not piece:
                continue
        pieces.append(piece)
        yield piece
    text = "".join(pieces)
    abstained = is_abstention(text)
    cited = [c for c in extract_citations(text) if 1 <= c <= inp.passages]
    if text.strip() and not abstained and not cited:
        tail = f" [{best_citation(text, texts[: inp.passages])}]"
        text += tail
        yield tail
    ttft = (times[0] if times else time.perf_counter()) - t0
    tps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
    return Written(text.strip(), abstained, ttft, tps, len(times), inp.passages, score[0] if score else None)
