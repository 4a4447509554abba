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
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from notes_rag.model import unit_reranker, unit_scorer
from notes_rag.model.reader import READ_PASSAGES, ReaderInput, encode
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.model.unit_reranker import UnitReranker
from notes_rag.question import is_follow_up
from notes_rag.text import clean_markup, unit_texts


class UnitEncoder(Protocol):
    """What the relevance codes and the unit prior need of retrieval (`index.search.Retriever`)."""

    def vectors(self, query: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The query's vector (d,) and the texts' as passages (n, d), L2-normalized."""
        ...

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
        q, vectors = self.vectors(query, texts)
        return vectors @ q

    def vectors(self, query: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        self.warm(texts)
        q = np.asarray(self._queries(self.encoder, [query]), dtype=np.float32)[0]
        return q, np.stack([self._cache[t] for t in texts])

    def translations(self, query: str) -> list[str]:
        return []


class UnitCollector:
    """A `UnitEncoder` that only records the unit texts it is asked about (cosines 0): a first pass
    over training items, so `PlainUnits.warm` can embed them all in one batched call."""

    def __init__(self):
        self.texts: list[str] = []

    def vectors(self, query: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        self.texts += texts
        return np.zeros(1, dtype=np.float32), np.zeros((len(texts), 1), dtype=np.float32)

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
    """Per passage, the cosine of each unit (`text.unit_spans`) to `query` (`unit_view`)."""
    return unit_view(encoder, query, passages).cosines


@dataclass
class UnitView:
    """What the encoder sees of the units read (`text.unit_spans` of each passage, in order)."""

    units: list[list[str]]  # per passage, its units' texts
    q: np.ndarray  # (d,) the query's vector
    vectors: np.ndarray  # (n, d) every unit's, passage by passage; zero for a unit without a letter
    cosines: list[list[float]]  # per passage, each unit's cosine to the query


def unit_view(encoder: UnitEncoder, query: str, passages: Sequence[tuple[str, str]]) -> UnitView:
    """The units' vectors and cosines, in one encoder call (the retriever's caches: the question's
    vector from its search, the units' stored with the index). A unit without a letter or digit
    (a rule of dashes, an emptied image line) gets a zero vector and the lowest cosine of the
    rest minus 0.01, so it ranks last (-0.01 when no unit has a word)."""
    per = [unit_texts(text) for _, text in passages]
    flat = [u for units in per for u in units]
    idx = [i for i, u in enumerate(flat) if any(ch.isalnum() for ch in u)]
    if not idx:
        floor = [[-0.01] * len(u) for u in per]
        return UnitView(per, np.zeros(1, np.float32), np.zeros((len(flat), 1), np.float32), floor)
    q, found = encoder.vectors(query, [flat[i] for i in idx])
    vectors = np.zeros((len(flat), found.shape[1]), dtype=np.float32)
    vectors[idx] = found
    cos = np.full(len(flat), float((found @ q).min()) - 0.01, dtype=np.float32)
    cos[idx] = found @ q
    return UnitView(per, q, vectors, _per_passage(cos, per))


def unit_prior(view: UnitView, query: str, reranker: UnitReranker | None = None) -> list[list[float]]:
    """Per passage, the log-probability that each unit is the one holding the answer: a softmax
    over every unit read of the unit scorer's score (model/unit_scorer.py), plus, with a
    `reranker` (model/unit_reranker.py), its score of the scorer's top units (the others get its
    lowest); a unit without a letter or digit gets -inf. `view` is `unit_view` of `query`, the
    one the turn's relevance codes were read from. The writer weighs the model's choice of the
    first unit it copies with it (chat/writer.py, model/unit_copy.py)."""
    worded = view.vectors.any(axis=1)
    logp = np.full(len(worded), -np.inf)
    if worded.any():
        scorer = unit_scorer.for_width(view.vectors.shape[1])
        scores = scorer.scores(unit_scorer.unit_features(query, view.units, view.cosines), view.q, view.vectors)
        s = scores.astype(np.float64)
        if reranker is not None:
            s = s + _reranked(reranker, query, view.units, np.where(worded, s, -np.inf))
        s = s[worded]
        logp[worded] = s - np.logaddexp.reduce(s)
    return _per_passage(logp, view.units)


def _reranked(reranker: UnitReranker, query: str, units: list[list[str]], scores: np.ndarray) -> np.ndarray:
    """The reranker's scores of the `TOP_K` best `scores` (flat, -inf: not a candidate), its
    lowest for every other unit."""
    where = [(p, i) for p, us in enumerate(units) for i in range(len(us))]
    top = [int(k) for k in np.argsort(-scores, kind="stable")[: unit_reranker.TOP_K] if np.isfinite(scores[k])]
    found = reranker.scores(query, units, [where[k] for k in top])
    out = np.full(len(scores), float(found.min()) if len(found) else 0.0)
    out[top] = found
    return out


def _per_passage(flat: np.ndarray, per: list[list[str]]) -> list[list[float]]:
    out, k = [], 0
    for units in per:
        out.append([float(x) for x in flat[k : k + len(units)]])
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
    view: UnitView | None = None,
) -> ReaderInput:
    """The model input of one turn (model/reader.py `encode`) with its relevance codes, read from
    `view` when the caller has it (`unit_view` of `relevance_query(question, previous)`: the chat
    reads its unit prior from the same view), else from the encoder."""
    if view is None:
        view = unit_view(encoder, relevance_query(question, previous), passages)
    return encode(
        tok,
        question,
        passages,
        previous,
        tuple(encoder.translations(question)),
        max_len=max_len,
        system=system,
        relevance=view.cosines,
    )
