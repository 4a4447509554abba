"""The second retrieval stage: a learned linear reranker over the fused top candidates.

Fusion adds whole-list statistics (dense and BM25 z-scores), which lets a chunk that several
weak signals like outvote the one chunk holding the question's rare term ("Czym jest RoPE?":
"rope" occurs in two chunks, so its BM25 list is two long and its z-score says little). The
reranker looks at each of the top `RetrievalConfig.rerank_depth` candidates with features that
are comparable across questions and collections:

- fused:      the candidate's fused score, in standard deviations over the candidates
- dense:      its cosine minus the best candidate cosine (x10: cosines live in a narrow band)
- bm25:       its BM25 score over the best candidate's (0 when BM25 did not find it)
- translated: the same for BM25 of the question's translated words
- tdense:     the cosine of the translated words' text, minus the best (0 without translation)
- coverage:   the share of the question's idf mass whose words the chunk holds (any form)
- rare:       the same share counting only rare words (in at most `RARE_DF` chunks)
- heading:    the share of the idf mass found in the chunk's heading path
- sentence:   the best single sentence's share: evidence in one place, not spread thin

Score = features · weights; the weights (`rerank-weights.json` beside this module) are fitted by
`benchmarks/rerank_fit.py` with a listwise softmax loss on kit questions over kit articles
indexed as notes (never on the dev set), with the chunks the fusion ranked near the gold one as
hard negatives. Features cost no encoder call: under a millisecond for 20 candidates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from notes_rag.index.lexical import STOPWORDS, analyze
from notes_rag.text import lowercase_words, sentence_spans

PACKAGED = Path(__file__).with_name("rerank-weights.json")
FEATURES = ("fused", "dense", "bm25", "translated", "tdense", "coverage", "rare", "heading", "sentence")
RARE_DF = 3


@dataclass(frozen=True)
class Signals:
    """What the first stage knows about the candidates of one question (chunk id -> score)."""

    fused: dict[int, float]
    dense: dict[int, float]
    bm25: dict[int, float]
    translated: dict[int, float]
    tdense: dict[int, float]
    words: list[tuple[float, frozenset[int]]]  # per question word: idf, chunks holding it
    query: str


def rare_words(words: list[tuple[float, frozenset[int]]]) -> list[tuple[float, frozenset[int]]]:
    """The question words found in at most `RARE_DF` chunks (and in at least one)."""
    return [(idf, docs) for idf, docs in words if 0 < len(docs) <= RARE_DF]


def _relative(scores: dict[int, float], ids: list[int], missing: float | None) -> np.ndarray:
    """Each candidate's score over the best candidate's (`missing` = not found: 0 for BM25)."""
    vals = [scores.get(c) for c in ids]
    best = max((v for v in vals if v is not None), default=0.0)
    if best <= 0:
        return np.zeros(len(ids))
    return np.array([(v if v is not None else missing or 0.0) / best for v in vals])


def _cosine_gap(scores: dict[int, float], ids: list[int]) -> np.ndarray:
    """Cosine minus the best candidate cosine, x10; a candidate the dense ranking lacks counts
    as its worst listed one."""
    if not scores:
        return np.zeros(len(ids))
    floor, best = min(scores.values()), max(scores.get(c, -1.0) for c in ids)
    best = best if best > -1.0 else max(scores.values())
    return np.array([10.0 * (scores.get(c, floor) - best) for c in ids])


def _word_hits(word_terms: list[set[str]], text: str) -> np.ndarray:
    terms = set(analyze(text))
    return np.array([bool(t & terms) for t in word_terms], dtype=float)


def features(sig: Signals, ids: list[int], texts: dict[int, str], headings: dict[int, str]) -> np.ndarray:
    """(len(ids), len(FEATURES)) feature matrix of the candidates `ids`."""
    floor = min(sig.fused.values(), default=0.0)
    fused = np.array([sig.fused.get(c, floor) for c in ids])
    sd = fused.std()
    z = (fused - fused.mean()) / sd if sd > 1e-9 else np.zeros(len(ids))
    idf = np.array([w for w, _ in sig.words])
    mass = idf.sum() or 1.0
    rare = np.array([0 < len(docs) <= RARE_DF for _, docs in sig.words], dtype=float)
    holds = np.array([[c in docs for _, docs in sig.words] for c in ids], dtype=float).reshape(len(ids), len(idf))
    word_terms = [set(analyze(w)) for w in dict.fromkeys(x for x in lowercase_words(sig.query) if x not in STOPWORDS)]
    heading = np.array([_word_hits(word_terms, headings.get(c, "")) @ idf / mass if len(idf) else 0.0 for c in ids])
    sentence = np.zeros(len(ids))
    if len(idf):
        for i, c in enumerate(ids):
            text = texts.get(c, "")
            sentence[i] = max((_word_hits(word_terms, text[s:e]) @ idf for s, e in sentence_spans(text)), default=0.0)
        sentence /= mass
    return np.column_stack(
        [
            z,
            _cosine_gap(sig.dense, ids),
            _relative(sig.bm25, ids, 0.0),
            _relative(sig.translated, ids, 0.0),
            _cosine_gap(sig.tdense, ids) if sig.tdense else np.zeros(len(ids)),
            holds @ idf / mass if len(idf) else np.zeros(len(ids)),
            holds @ (idf * rare) / mass if len(idf) else np.zeros(len(ids)),
            heading,
            sentence,
        ]
    )


@dataclass(frozen=True)
class Reranker:
    weights: np.ndarray

    @classmethod
    def load(cls, path: Path = PACKAGED) -> Reranker:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"{path} was fitted for features {data['features']}, not {list(FEATURES)}")
        return cls(np.asarray(data["weights"], dtype=float))

    def scores(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights
