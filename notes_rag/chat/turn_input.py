"""What our GPT reads in one turn, built once for the chat and for training alike.

    passages = read_passages(sources)                       # the top ones, markup cleaned
    inp = turn_input(tok, retriever, question, previous, passages, system, max_len)

The passages are the retrieved chunks' text through `text.clean_markup` (so no answer can copy an
image placeholder, link syntax or emphasis markers); each is split into units by `text.unit_spans`
and every unit gets the retrieval encoder's cosine to the question and the unit scorer's score
(`unit_relevance`; model/unit_scorer.py: the encoder's view of the unit and its neighbours), which
the model input turns into relevance codes (model/reader.py `relevance_codes`): the encoder sees
which line means what the question asks, our GPT learns where in the note structure the answer is.

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

from notes_rag.model import unit_scorer
from notes_rag.model.reader import READ_PASSAGES, ReaderInput, UnitRelevance, encode
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.model.unit_scorer import UnitScorer
from notes_rag.question import is_follow_up
from notes_rag.text import clean_markup, unit_texts


class UnitEncoder(Protocol):
    """What the relevance features need of retrieval (`index.search.Retriever`)."""

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


@dataclass
class UnitView:
    """What the encoder sees of the units read (`text.unit_spans` of each passage, in order)."""

    units: list[list[str]]  # per passage, its units' texts
    q: np.ndarray  # (d,) the query's vector
    vectors: np.ndarray  # (n, d) every unit's, passage by passage; zero for a unit without a letter
    cosines: list[list[float]]  # per passage, each unit's cosine to the query


def unit_view(encoder: UnitEncoder, query: str, passages: Sequence[tuple[str, str]]) -> UnitView:
    """The units' vectors and cosines from one encoder call (a chat turn's vectors are at hand:
    the question's from retrieval, the units' stored with the index). A unit without a letter or
    digit (a rule of dashes, an emptied image line) gets the lowest cosine of the rest, so it
    ranks last."""
    per = [unit_texts(text) for _, text in passages]
    flat = [u for units in per for u in units]
    idx = [i for i, u in enumerate(flat) if any(ch.isalnum() for ch in u)]
    if not idx:
        zero = [[0.0] * len(u) for u in per]
        return UnitView(per, np.zeros(1, np.float32), np.zeros((len(flat), 1), np.float32), zero)
    q, found = encoder.vectors(query, [flat[i] for i in idx])
    vectors = np.zeros((len(flat), found.shape[1]), dtype=np.float32)
    vectors[idx] = found
    cos = np.full(len(flat), float((found @ q).min()) - 0.01, dtype=np.float32)
    cos[idx] = found @ q
    return UnitView(per, q, vectors, _per_passage(cos, per))


def _per_passage(flat: np.ndarray, per: list[list[str]]) -> list[list[float]]:
    out, k = [], 0
    for units in per:
        out.append([float(x) for x in flat[k : k + len(units)]])
        k += len(units)
    return out


def unit_relevance(
    encoder: UnitEncoder, query: str, passages: Sequence[tuple[str, str]], scorer: UnitScorer | None = None
) -> UnitRelevance:
    """The units' cosines to `query` and their scores by `scorer` (default: the packaged one,
    model/unit_scorer.py `for_width`)."""
    view = unit_view(encoder, query, passages)
    if not view.vectors.any():
        return UnitRelevance(view.cosines, view.cosines)
    scorer = scorer if scorer is not None else unit_scorer.for_width(view.vectors.shape[1])
    flat = scorer.scores(unit_scorer.unit_features(query, view.units, view.cosines), view.q, view.vectors)
    flat[~view.vectors.any(axis=1)] = flat.min() - 1.0  # a unit without a letter ranks last
    return UnitRelevance(view.cosines, _per_passage(flat, view.units))


# The scorer's top units the model reads, each with the unit before and after it (the rest of each
# passage is cut). Chosen on notes_qa's train notes (benchmarks/unit_scorer_fit.py): the top 5 units
# or a unit with the next hold the answer for 0.80 of the questions (top 3: 0.73, top 8: 0.84),
# in ~10 lines instead of ~34.
FOCUS_UNITS = 5


def focus(passages: list[tuple[str, str]], rel: UnitRelevance, k: int = FOCUS_UNITS):
    """`passages` cut to the `k` best-scored units and their neighbours, in note order, with their
    relevance; a passage none of them is in keeps its best unit, so passage numbers stay."""
    flat = sorted(((s, p, u) for p, ss in enumerate(rel.scores) for u, s in enumerate(ss)), key=lambda x: -x[0])
    keep: list[set[int]] = [set() for _ in passages]
    for _, p, u in flat[:k]:
        keep[p].update(x for x in (u - 1, u, u + 1) if 0 <= x < len(rel.scores[p]))
    out, cosines, scores = [], [], []
    for p, (label, text) in enumerate(passages):
        units = unit_texts(text)
        idx = sorted(i for i in keep[p] if any(ch.isalnum() for ch in units[i]))
        if not idx and units:
            idx = [max(range(len(units)), key=lambda i: rel.scores[p][i])]
        cut = "\n".join(units[i] for i in idx)
        if len(unit_texts(cut)) != len(idx):  # lines that split otherwise once joined: read it whole
            idx, cut = list(range(len(units))), text
        out.append((label, cut))
        cosines.append([rel.cosines[p][i] for i in idx])
        scores.append([rel.scores[p][i] for i in idx])
    return out, UnitRelevance(cosines, scores)


def turn_input(
    tok: Tokenizer,
    encoder: UnitEncoder,
    question: str,
    previous: tuple[str, ...],
    passages: list[tuple[str, str]],
    system: str | None,
    max_len: int,
) -> ReaderInput:
    """The model input of one turn (model/reader.py `encode`) with its relevance codes, over the
    passages cut to the unit scorer's best units (`focus`; `ReaderInput.read` holds them)."""
    rel = unit_relevance(encoder, relevance_query(question, previous), passages)
    read, rel = focus(passages, rel)
    return encode(
        tok,
        question,
        read,
        previous,
        tuple(encoder.translations(question)),
        max_len=max_len,
        system=system,
        relevance=rel,
    )
