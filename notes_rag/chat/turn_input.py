"""What our GPT reads in one turn, built once for the chat and for training alike.

    passages = read_passages(sources)                       # the top ones, markup cleaned
    inp = turn_input(tok, retriever, question, previous, passages, system, max_len)

The passages are the retrieved chunks' text through `text.clean_markup` (so no answer can copy an
image placeholder, link syntax or emphasis markers); each is split into units by `text.unit_spans`
and every unit gets the retrieval encoder's cosine to the question (`unit_cosines`), which the model
input turns into relevance codes (model/reader.py `relevance_codes`): the encoder sees which line
means what the question asks, our GPT learns where in the note structure the answer is.

The question the units are compared with is `relevance_query`: the question itself, or for an
elliptical follow-up ("A w którym roku?") the previous question and it, by the same test that
abstention uses (question.py `is_follow_up`).

sft/notes_qa.py builds training items with these same functions over a real index of training
notes, so what the model learns from is what the chat gives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from notes_rag.model.reader import READ_PASSAGES, ReaderInput, encode
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.question import is_follow_up
from notes_rag.text import clean_markup, unit_texts


class UnitEncoder(Protocol):
    """What the relevance features need of retrieval (`index.search.Retriever`)."""

    def similarity(self, query: str, texts: list[str]) -> np.ndarray: ...

    def translations(self, query: str) -> list[str]: ...


class PlainUnits:
    """A `UnitEncoder` over a sentence encoder alone, no index (training items of the kit): each
    passage text embedded once per process; no translations (the kit's items never had them)."""

    def __init__(self, encoder):
        from notes_rag.index.encoder import encode_passages, encode_queries

        self.encoder, self._passages, self._queries = encoder, encode_passages, encode_queries
        self._cache: dict[str, np.ndarray] = {}

    def warm(self, texts: list[str]) -> None:
        """Embed `texts` in one batched call (many small calls cost several times as much)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            self._cache.update(zip(todo, np.asarray(self._passages(self.encoder, todo), dtype=np.float32)))

    def similarity(self, query: str, texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            self._cache.update(zip(todo, np.asarray(self._passages(self.encoder, todo), dtype=np.float32)))
        q = np.asarray(self._queries(self.encoder, [query]), dtype=np.float32)[0]
        return np.stack([self._cache[t] for t in texts]) @ q

    def translations(self, query: str) -> list[str]:
        return []


class UnitCollector:
    """A `UnitEncoder` that only records the unit texts it is asked about (cosines 0): a first pass
    over training items, so `PlainUnits.warm` can embed them all in one batched call."""

    def __init__(self):
        self.texts: list[str] = []

    def similarity(self, query: str, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return np.zeros(len(texts), dtype=np.float32)

    def translations(self, query: str) -> list[str]:
        return []


class _Labelled(Protocol):
    label: str
    text: str


def read_passages(sources: Sequence[_Labelled], n: int = READ_PASSAGES) -> list[tuple[str, str]]:
    """(label, text) of the first `n` retrieved passages as the model reads them (markup cleaned)."""
    return [(s.label, clean_markup(s.text)) for s in sources[: max(1, n)]]


def relevance_query(question: str, previous: Sequence[str]) -> str:
    """The text the units are compared with: a follow-up is read with the question before it."""
    if previous and is_follow_up(question):
        return f"{previous[-1]} {question}"
    return question


def unit_cosines(encoder: UnitEncoder, query: str, passages: Sequence[tuple[str, str]]) -> list[list[float]]:
    """Per passage, the cosine of each unit (`text.unit_spans`) to `query`, in one encoder call.
    A unit without a letter or digit (a rule of dashes, an emptied image line) gets the lowest
    cosine of the rest, so it ranks last."""
    per = [unit_texts(text) for _, text in passages]
    flat = [u for units in per for u in units]
    has = [any(ch.isalnum() for ch in u) for u in flat]
    cos = np.full(len(flat), np.nan, dtype=np.float32)
    idx = [i for i, h in enumerate(has) if h]
    if idx:
        cos[idx] = encoder.similarity(query, [flat[i] for i in idx])
    floor = float(np.nanmin(cos)) if idx else 0.0
    cos = np.where(np.isnan(cos), floor - 0.01, cos)
    out, k = [], 0
    for units in per:
        out.append([float(c) for c in cos[k : k + len(units)]])
        k += len(units)
    return out


def turn_input(
    tok: Tokenizer,
    encoder: UnitEncoder,
    question: str,
    previous: tuple[str, ...],
    passages: list[tuple[str, str]],
    system: str | None,
    max_len: int,
) -> ReaderInput:
    """The model input of one turn (model/reader.py `encode`) with its relevance codes."""
    cosines = unit_cosines(encoder, relevance_query(question, previous), passages)
    return encode(
        tok,
        question,
        passages,
        previous,
        tuple(encoder.translations(question)),
        max_len=max_len,
        system=system,
        relevance=cosines,
    )
