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

from notes_rag.errors import NotesRagError
from notes_rag.index.lexical import QueryWord, analyze
from notes_rag.text import sentence_spans

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
    words: list[QueryWord]  # the question's content words (and the conversation's, down-weighted)


def is_rare(word: QueryWord) -> bool:
    """Found in at most `RARE_DF` chunks (and in at least one)."""
    return 0 < len(word.chunks) <= RARE_DF


def _relative(scores: dict[int, float], ids: list[int]) -> np.ndarray:
    """Each candidate's score over the best candidate's; 0 for one the ranking did not list."""
    best = max((scores.get(c, 0.0) for c in ids), default=0.0)
    if best <= 0:
        return np.zeros(len(ids))
    return np.array([scores.get(c, 0.0) / best for c in ids])


def _cosine_gap(scores: dict[int, float], ids: list[int]) -> np.ndarray:
    """Cosine minus the best candidate cosine, x10; a candidate the dense ranking lacks counts
    as its worst listed one."""
    if not scores:
        return np.zeros(len(ids))
    floor = min(scores.values())
    vals = np.array([scores.get(c, floor) for c in ids])
    return 10.0 * (vals - vals.max())


def _present(terms: set[str], words: list[QueryWord]) -> np.ndarray:
    return np.array([bool(w.terms & terms) for w in words], dtype=float)


def features(sig: Signals, ids: list[int], texts: dict[int, str], headings: dict[int, str]) -> np.ndarray:
    """(len(ids), len(FEATURES)) feature matrix of the candidates `ids`."""
    floor = min(sig.fused.values(), default=0.0)
    fused = np.array([sig.fused.get(c, floor) for c in ids])
    sd = fused.std()
    z = (fused - fused.mean()) / sd if sd > 1e-9 else np.zeros(len(ids))
    # A word in no chunk says nothing about which candidate is better: it takes no share.
    words = [w for w in sig.words if w.chunks]
    idf = np.array([w.idf for w in words])
    mass = idf.sum() or 1.0
    rare = np.array([is_rare(w) for w in words], dtype=float)
    holds = np.array([w.chunks.holding(ids) for w in words], dtype=float).T.reshape(len(ids), len(words))
    heading, sentence = np.zeros(len(ids)), np.zeros(len(ids))
    for i, c in enumerate(ids):
        if not holds[i].any():
            continue
        heading[i] = _present(set(analyze(headings.get(c, ""))), words) @ idf
        text = texts.get(c, "")
        sentence[i] = max((_present(set(analyze(text[a:b])), words) @ idf for a, b in sentence_spans(text)), default=0)
    return np.column_stack(
        [
            z,
            _cosine_gap(sig.dense, ids),
            _relative(sig.bm25, ids),
            _relative(sig.translated, ids),
            _cosine_gap(sig.tdense, ids),
            holds @ idf / mass,
            holds @ (idf * rare) / mass,
            heading / mass,
            sentence / mass,
        ]
    )


@dataclass(frozen=True)
class Reranker:
    weights: np.ndarray

    @classmethod
    def load(cls, path: Path = PACKAGED) -> Reranker:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            names, weights = tuple(data["features"]), np.asarray(data["weights"], dtype=float)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise NotesRagError(f"cannot read the reranker weights {path}: {e}") from None
        if names != FEATURES or weights.shape != (len(FEATURES),):
            raise NotesRagError(f"{path} was fitted for features {list(names)}, not {list(FEATURES)}")
        return cls(weights)

    def scores(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights
