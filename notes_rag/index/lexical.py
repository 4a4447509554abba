"""BM25 over chunks with a Polish-aware Unicode analyzer (bm25s underneath).

Polish inflects heavily (model, modelu, modelem, modeli...), so exact-word BM25 misses most
matches and an English stemmer is useless. `analyze` emits, for every word: the lowercased word,
its diacritic-folded form (notes are often typed without ogonki: "zrodlo" for "źródło"), and a
crude stem: the folded word cut to `PREFIX` characters, which merges most inflected forms of
Polish and English words alike. Stopwords of both languages are dropped so question words
("jaki", "what") do not score. Choices measured on the dev questions, see docs/BENCHMARKS.md.

The index is saved with bm25s' own numpy/json format (loaded with allow_pickle=False).
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN_PLUS

from notes_rag.text import lowercase_words, strip_diacritics

PREFIX = 5

STOPWORDS = frozenset(
    """
a aby ale bo by być był była było były bez czy co dla do go gdy i ich ile im in jak jaka jaki
jakie jakich jakim jako je jego jej jest jestem już ją ku kto która które którego który ma mają
mi mnie mo moje mój na nad nam nas nie niego niej nim o od oraz po pod przez przy się sa są ta
tak te tego tej ten to tu ty tym w we według wg z za ze że czym czego jaką której których moich
moim moja moją mojej mu nich nią no też więc np
the a an and or of to in on for with by is are was were be been being it its this that these
those what which who whom whose when where why how do does did my your our their me i you we
they he she them his her from at as into about than then there here can could would should will
shall may might must has have had not no yes if so such mentioned notes note
""".split()
) | frozenset(STOPWORDS_EN_PLUS)


# Per word, cached: the reranker analyzes the sentences of 20 chunks per question, and Unicode
# decomposition of every word was most of its time.
_fold_word = functools.lru_cache(maxsize=1 << 16)(strip_diacritics)


def stem(word: str) -> str:
    """A lowercased word's crude stem: diacritics folded, cut to `PREFIX` letters."""
    return _fold_word(word)[:PREFIX]


def analyze(text: str) -> list[str]:
    """Terms of a text: word, folded word and prefix stem (distinct kinds never collide)."""
    terms = []
    for word in lowercase_words(text):
        if word in STOPWORDS:
            continue
        terms.append(word)
        folded = _fold_word(word)
        if folded != word:
            terms.append("~" + folded)
        if len(folded) > PREFIX:
            terms.append(folded[:PREFIX] + "*")
    return terms


class ChunkSet:
    """The chunks holding a word, as a boolean mask over the index's rows: in a 180k-chunk
    index a common word is in ~100k chunks, and a Python set of their ids cost most of a hybrid
    search (docs/BENCHMARKS.md, "Index at scale"); setting mask rows from the term-document
    matrix costs microseconds. Supports what the reranker asks: `len`, `in`, `holding`,
    iteration (chunk ids, ascending rows), `union`."""

    __slots__ = ("_index", "_mask", "_len")

    def __init__(self, index: LexicalIndex, mask: np.ndarray):
        self._index, self._mask = index, mask
        self._len = int(np.count_nonzero(mask))

    def __len__(self) -> int:
        return self._len

    def __contains__(self, chunk_id: object) -> bool:
        return isinstance(chunk_id, (int, np.integer)) and bool(self.holding([int(chunk_id)])[0])

    def __iter__(self):
        return iter(self._index.ids[np.flatnonzero(self._mask)].tolist())

    def holding(self, chunk_ids: list[int]) -> np.ndarray:
        """Whether each of `chunk_ids` is in the set (bool array)."""
        rows = self._index.rows_of(chunk_ids)
        return (rows >= 0) & self._mask[np.maximum(rows, 0)] if len(self._mask) else rows >= 0

    def union(self, *others: ChunkSet) -> ChunkSet:
        mask = self._mask.copy()
        for o in others:
            mask |= o._mask
        return ChunkSet(self._index, mask)


@dataclass(frozen=True, eq=False)
class QueryWord:
    word: str
    terms: frozenset[str]  # its BM25 terms (`analyze`)
    idf: float
    chunks: ChunkSet  # the chunks holding it


class LexicalIndex:
    """BM25 scores over a fixed list of chunk ids (row i of the index is chunk `ids[i]`)."""

    def __init__(self, bm25: bm25s.BM25, ids: np.ndarray):
        self.bm25, self.ids = bm25, ids
        self._sorted_rows: np.ndarray | None = None  # rows in chunk-id order, for rows_of

    def rows_of(self, chunk_ids: list[int]) -> np.ndarray:
        """The row of each chunk id, -1 for one the index does not hold (one sorted search)."""
        ids = np.asarray(chunk_ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        if self._sorted_rows is None:
            self._sorted_rows = np.argsort(self.ids, kind="stable")
        at = np.minimum(np.searchsorted(self.ids, ids, sorter=self._sorted_rows), len(self.ids) - 1)
        rows = self._sorted_rows[at]
        return np.where(self.ids[rows] == ids, rows, -1)

    @classmethod
    def build(cls, ids: list[int], texts: Iterable[str]) -> LexicalIndex:
        # Each text's terms become ids as it is analyzed, 4 bytes a term: lists of term strings
        # for every chunk took ~18x the text's size (a 100 MB folder would need ~2 GB).
        vocab: dict[str, int] = {}
        # bm25s needs at least one term per document; "" is its reserved empty token.
        docs = [array("i", [vocab.setdefault(w, len(vocab)) for w in analyze(t) or [""]]) for t in texts]
        bm25 = bm25s.BM25()
        bm25.index((docs or [array("i", [vocab.setdefault("", 0)])], vocab), show_progress=False)
        return cls(bm25, np.asarray(ids, dtype=np.int64))

    def save(self, folder: Path) -> None:
        self.bm25.save(str(folder), allow_pickle=False, show_progress=False)
        np.save(Path(folder) / "ids.npy", self.ids, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        bm25 = bm25s.BM25.load(str(folder), allow_pickle=False, show_progress=False)
        return cls(bm25, np.load(Path(folder) / "ids.npy", allow_pickle=False))

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top-k (chunk id, score) with a positive score, best first."""
        term_ids = self.bm25.get_tokens_ids(analyze(query))
        if not term_ids or len(self.ids) == 0:
            return []
        return self._top(self.bm25.get_scores_from_ids(term_ids), k)

    def search_groups(self, groups: list[list[str]], k: int) -> list[tuple[int, float]]:
        """Top-k for a structured query: each group holds alternatives for one word (its
        translations); a chunk scores, per group, its best alternative (a phrase's BM25 score
        divided by its words), summed over groups. A word with many senses thus counts once,
        not once per sense (Pirkola's structured queries for dictionary-based translation)."""
        if len(self.ids) == 0:
            return []
        total = np.zeros(len(self.ids))
        for group in groups:
            best = np.zeros(len(self.ids))
            for alternative in group:
                term_ids = self.bm25.get_tokens_ids(analyze(alternative))
                if term_ids:
                    scores = self.bm25.get_scores_from_ids(term_ids) / len(lowercase_words(alternative))
                    np.maximum(best, scores, out=best)
            total += best
        return self._top(total, k)

    def query_words(self, text: str, weight: float = 1.0) -> list[QueryWord]:
        """The distinct content words of `text` with their BM25 idf (times `weight`) and the
        chunk ids holding them in any form (word, folded or stem), read from the index's
        term-document matrix: no chunk text is needed."""
        scores, n = self.bm25.scores, max(len(self.ids), 1)
        out = []
        for word in dict.fromkeys(w for w in lowercase_words(text) if w not in STOPWORDS):
            terms = analyze(word)
            mask = np.zeros(len(self.ids), bool)
            for t in self.bm25.get_tokens_ids(terms):
                mask[scores["indices"][scores["indptr"][t] : scores["indptr"][t + 1]]] = True
            held = ChunkSet(self, mask)
            idf = float(np.log(1 + (n - len(held) + 0.5) / (len(held) + 0.5)))
            out.append(QueryWord(word, frozenset(terms), weight * idf, held))
        return out

    def _top(self, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0]
