"""Search an index: dense (FAISS), BM25, and their fusion; conversation-aware retrieval.

    r = Retriever.open(None)                 # finds ./.notes-rag or ./corpus/.notes-rag
    res = r.search("Ile kosztował trening GPT-3?", k=5)      # mode="hybrid" | "dense" | "bm25"
    res.hits[0].file, res.hits[0].line_start, res.top_cosine
    r.search_conversation(["Who proposed the model of the neuron?", "In which year?"])

Hybrid ranking adds the dense and BM25 scores of each candidate after expressing each list's
scores in standard deviations from its mean (`RetrievalConfig.fusion`; weighted reciprocal rank
fusion is the alternative, measured worse on the dev questions: rank fusion with k=60 flattens a
clear dense or BM25 winner to almost nothing). A BM25 list shorter than the candidate count is
scored against the chunks it did not list, so a rare term's one match stands out. In a
conversation the current question is fused with the question joined to the previous user turns,
so elliptical follow-ups ("A Llama 3?", "In which year?") find the notes the conversation is
about. The fused top candidates are then reordered by the learned reranker (`rerank`).

Notes in both languages (issue #23): the dense ranking also holds each language's best chunks,
each language's cosines are z-scored apart before fusion, the reranker also sees each
language's best-fused chunks, and its word features count the question's translations, so an
English question's Polish answer is not lost behind English passages on the same topic
(`RetrievalConfig.per_language`, `dense_by_language`, `per_language_rerank`, `translated_coverage`).

`SearchResult.top_cosine` is the dense top-1 cosine of the question as asked (of the conversation
too, for a follow-up: `question.py`): fused scores say nothing about whether the notes answer the
question at all; this cosine nearly does (see `RetrievalConfig.abstain_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.index import integrity, rerank, store
from notes_rag.index.bilingual import Bilingual, with_translations
from notes_rag.index.config import MODES, IndexConfig, RetrievalConfig
from notes_rag.index.encoder import encode_passages, encode_queries, load_query_encoder
from notes_rag.index.encoder_cache import encoder_id
from notes_rag.index.lexical import STOPWORDS
from notes_rag.index.rerank import Reranker, Signals
from notes_rag.lang import detect_lang
from notes_rag.question import QUESTION_WORDS, is_follow_up, names, only_names


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    chunk_id: int
    file: str
    line_start: int
    line_end: int
    heading_path: tuple[str, ...]
    text: str
    location: str = ""  # "p12", "cells 3-5" in files cited by page or cell (chunker.Chunk)

    @property
    def citation(self) -> str:
        """`notes.md:12-18`, `slides.pdf:p12`, `nb.ipynb:cell 7`."""
        return f"{self.file}:{self.location or f'{self.line_start}-{self.line_end}'}"

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "score": self.score,
            "chunk_id": self.chunk_id,
            "file": self.file,
            "line_start": self.line_start,
            "line_end": self.line_end,
            "heading_path": list(self.heading_path),
            "text": self.text,
            "location": self.location,
            "citation": self.citation,
        }


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    # Dense top-1 cosine of the question as asked; of the question or the conversation joined
    # to it, the better, when the question is a follow-up (question.py).
    top_cosine: float
    # Names in the question that no chunk mentions (question.names): the notes cannot answer it.
    unknown_names: tuple[str, ...] = ()
    # The question asks about nothing but names, and the top hit holds them all (question.only_names):
    # the notes speak of it whatever the cosine.
    names_in_top: bool = False
    # The question's content words that no chunk holds in any form or translation, when they are
    # at least `RetrievalConfig.unknown_word_share` of its content words (by default all of them:
    # "Jak ugotować rosół?"): the notes are not about it. Empty otherwise, and for a follow-up in
    # a conversation.
    unknown_words: tuple[str, ...] = ()

    def __iter__(self):
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, i: int) -> Hit:
        return self.hits[i]


def resolve_index(index: Path | None) -> Path:
    """`--index DIR` if given, else `./.notes-rag/`, else `./corpus/.notes-rag/`."""
    if index is not None:
        if store.current_generation(Path(index)) is None:
            raise NotesRagError(f"no index at {index}; build it with: notes-rag index NOTES_FOLDER --out {index}")
        return Path(index)
    candidates = (Path(".notes-rag"), Path("corpus") / ".notes-rag")
    for candidate in candidates:
        if candidate.is_dir() and store.current_generation(candidate) is not None:
            return candidate
    for candidate in candidates:  # an index folder whose pointer is gone: rebuild that folder's notes
        if candidate.is_dir():
            notes = "." if candidate.parent == Path(".") else f"{candidate.parent.as_posix()}/"
            raise NotesRagError(
                f"the index in ./{candidate.as_posix()} has no {store.CURRENT} (an interrupted or damaged "
                f"index); rebuild it with: notes-rag index {notes}"
            )
    raise NotesRagError(
        "no index found in ./.notes-rag or ./corpus/.notes-rag; build one with: notes-rag index corpus/"
    )


def _rrf(rankings: list[tuple[list[int], float]], rrf_k: int) -> dict[int, float]:
    """Weighted reciprocal rank fusion of rankings (chunk ids best first)."""
    fused: dict[int, float] = {}
    for ids, weight in rankings:
        for rank, cid in enumerate(ids, start=1):
            fused[cid] = fused.get(cid, 0.0) + weight / (rrf_k + rank)
    return fused


def _zscores(scores: dict[int, float], listed: int = 0) -> tuple[dict[int, float], float]:
    """Scores in standard deviations from their list's mean, so cosines (a narrow band around
    0.85) and BM25 scores (0 to ~20) can be added, and the score of a chunk the list lacks
    (its worst entry's). A list of one counts as 1. A lexical list shorter than `listed` is
    padded with zero scores, since the chunks it lacks matched no word: unpadded, a rare term's
    list of two says +1 / -1 however strong its match."""
    padding = max(0, listed - len(scores))
    values = np.asarray(list(scores.values()) + [0.0] * padding, dtype=np.float64)
    if len(values) < 2 or values.std() < 1e-9:
        return {c: 1.0 for c in scores}, 1.0
    mu, sd = values.mean(), values.std()
    z = {c: (x - mu) / sd for c, x in scores.items()}
    return z, (-mu / sd if padding else min(z.values()))


def _zfuse(rankings: list[tuple[dict[int, float], float, int]]) -> dict[int, float]:
    """Weighted sum of each ranking's z-scores (rankings are (scores, weight, listed), see
    `_zscores`); a chunk missing from a ranking takes its missing score. Empty rankings take
    no part."""
    parts = [(*_zscores(scores, listed), w) for scores, w, listed in rankings if scores]
    chunks = set().union(*(z.keys() for z, _, _ in parts))
    return {c: sum(w * z.get(c, floor) for z, floor, w in parts) for c in chunks}


PASSAGE_CACHE = 200_000  # texts kept by Retriever.passage_vectors (384 floats each: ~300 MB at most)


class Retriever:
    def __init__(self, index_dir: Path, encoder=None, cfg: RetrievalConfig = RetrievalConfig()):
        self.index_dir, self.cfg = Path(index_dir), cfg
        # checked against its manifest; a damaged index is one NotesRagError line (index/integrity.py)
        live = integrity.open_generation(self.index_dir, IndexConfig.ivf_nprobe)
        self.generation, self.conn, self.meta, self.lexical = live.generation, live.conn, live.meta, live.lexical
        if self.meta.get("schema") != store.SCHEMA_VERSION:  # its tables lack what this version reads
            raise NotesRagError(
                f"the index at {index_dir} is in an older format; update it with: notes-rag index NOTES_FOLDER"
            )
        self.dense = store.to_gpu_if_available(live.dense)
        self.bilingual = Bilingual.load(Path(cfg.dict_dir), lexicon_path=cfg.lexicon) if cfg.bilingual else None
        self.reranker = Reranker.load() if cfg.rerank else None
        self._last_queries: dict[str, np.ndarray] = {}  # the last search's query vectors, by text
        self._passage_cache: dict[str, np.ndarray] = {}  # passage_vectors' texts, by text
        self._ids, self._langs = self._chunk_langs()
        self._lang_params = self._language_selectors() if cfg.per_language else {}
        self.encoder = encoder if encoder is not None else load_query_encoder(self.meta["encoder_path"])
        if encoder_id(self.encoder) != self.meta["encoder"]:
            raise NotesRagError(
                f"the index was built with encoder {self.meta['encoder']}, not {encoder_id(self.encoder)}; "
                "re-run notes-rag index with the encoder you want"
            )

    @classmethod
    def open(cls, index: Path | None = None, cfg: RetrievalConfig = RetrievalConfig()) -> Retriever:
        return cls(resolve_index(index), cfg=cfg)

    @property
    def abstain_threshold(self) -> float | None:
        """The calibrated threshold holds for the default encoder only."""
        return self.cfg.abstain_threshold if self.meta["encoder_path"] is None else None

    def close(self) -> None:
        self.conn.close()

    def refresh(self) -> bool:
        """Reopen the index when `notes-rag index` (or `index --watch`) has made a new generation
        live since this one was opened, so a running chat answers from the notes as they are
        now; True when it did. Costs one small file read when nothing changed."""
        if store.live_generation_name(self.index_dir) == self.generation.name:
            return False
        old = self.conn
        self.__init__(self.index_dir, self.encoder, self.cfg)
        old.close()
        return True

    def chunks(self) -> list[tuple[str, str]]:
        """Every indexed (file, chunk text), in index order."""
        return list(self.conn.execute("SELECT file, text FROM chunks ORDER BY id"))

    def file_langs(self) -> dict[str, str]:
        """Each file's language: the majority language of its chunks' text."""
        votes: dict[str, dict[str, int]] = {}
        for file, lang, n in self.conn.execute("SELECT file, lang, SUM(LENGTH(text)) FROM chunks GROUP BY file, lang"):
            votes.setdefault(file, {})[lang] = n
        return {f: max(v, key=v.get) for f, v in votes.items()}

    # -- languages -----------------------------------------------------------------------------
    def _chunk_langs(self) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ids (sorted) and their languages, for `lang_of`; 1M chunks take ~10 MB."""
        rows = self.conn.execute("SELECT id, lang FROM chunks ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows])

    def lang_of(self, ids: list[int]) -> list[str]:
        """The language of each chunk id (as the index recorded it)."""
        pos = np.searchsorted(self._ids, np.asarray(ids, dtype=np.int64))
        return [str(x) for x in self._langs[np.minimum(pos, len(self._ids) - 1)]] if len(self._ids) else []

    def _language_selectors(self) -> dict[str, faiss.SearchParameters]:
        """FAISS search parameters restricting the dense search to one language's chunks, per
        language, when the index holds more than one (else none are needed). An index FAISS
        cannot restrict (on a GPU) gets none: its exact scan then goes without."""
        langs = sorted(set(self._langs.tolist()))
        if len(langs) < 2 or not isinstance(self.dense, faiss.IndexIDMap):
            return {}
        inner = faiss.downcast_index(self.dense.index)
        if not isinstance(inner, (faiss.IndexFlat, faiss.IndexIVF)):
            return {}
        out = {}
        for lang in langs:
            sel = faiss.IDSelectorBatch(self._ids[self._langs == lang])
            if isinstance(inner, faiss.IndexIVF):
                out[lang] = faiss.SearchParametersIVF(sel=sel, nprobe=inner.nprobe)
            else:
                out[lang] = faiss.SearchParameters(sel=sel)
        return out

    # -- rankings ------------------------------------------------------------------------------
    def _dense(self, queries: list[str], n: int) -> list[dict[int, float]]:
        """Top-n chunks per query with their cosine, plus each language's best `per_language`
        when the notes hold both (`_language_selectors`)."""
        vectors = np.asarray(encode_queries(self.encoder, queries), dtype=np.float32)
        self._last_queries = dict(zip(queries, vectors))
        n = min(n, self.dense.ntotal)
        if n == 0:
            return [{} for _ in queries]
        scores, ids = self.dense.search(vectors, n)
        out = [{int(i): float(s) for s, i in zip(srow, irow) if i >= 0} for srow, irow in zip(scores, ids)]
        m = min(self.cfg.per_language, n)
        for lang, params in self._lang_params.items():
            # a language the top n already holds m chunks of needs no search of its own
            short = [q for q, found in enumerate(out) if self.lang_of(list(found)).count(lang) < m]
            if not short:
                continue
            scores, ids = self.dense.search(vectors[short], m, params=params)
            for q, srow, irow in zip(short, scores, ids):
                for s, i in zip(srow, irow):
                    if i >= 0:
                        out[q].setdefault(int(i), float(s))
        return out

    def similarity(self, query: str, texts: list[str]) -> np.ndarray:
        """Cosines of `texts` (as passages) to `query` under the index's encoder."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        q, vectors = self.vectors(query, texts)
        return vectors @ q

    def vectors(self, query: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """`query`'s vector (d,) and `texts`' as passages (n, d) under the index's encoder."""
        # the question the chat reads for was usually just searched: its vector is at hand
        q = self._last_queries.get(query)
        if q is None:
            q = np.asarray(encode_queries(self.encoder, [query]), dtype=np.float32)[0]
        return q, self.passage_vectors(texts)

    def passage_vectors(self, texts: list[str]) -> np.ndarray:
        """`texts` embedded as passages, each text once per process: a chat's units recur from turn
        to turn (the same notes are read again) and training items share their notes' units."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._passage_cache))
        if todo:
            if len(self._passage_cache) + len(todo) > PASSAGE_CACHE:
                self._passage_cache.clear()
            for t, v in zip(todo, np.asarray(encode_passages(self.encoder, todo), dtype=np.float32)):
                self._passage_cache[t] = v
        return np.stack([self._passage_cache[t] for t in texts])

    def translations(self, query: str) -> list[str]:
        """The query's words in the other language ([] without the dictionaries): the model
        input flags passage words that match them (model/reader.py)."""
        return [w for group in self._translate(query, detect_lang(query)) for w in group]

    def _translate(self, query: str, lang: str) -> list[list[str]]:
        """The query's words translated from `lang` to the other language, one group of
        alternatives per word; [] without the dictionaries."""
        return self.bilingual.translate(query, lang) if self.bilingual is not None else []

    def _fuse_query(
        self, query: str, dense: dict[int, float], mode: str, groups: list[list[str]], tdense: dict[int, float]
    ) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
        """(fused score, BM25 score, translated BM25 score) of each candidate chunk for one query
        string; `groups` are its translated words, `tdense` the dense ranking of their text."""
        if mode == "dense":
            return dense, {}, {}
        n = self.cfg.candidates if self.cfg.pad_lexical else 0
        bm25 = dict(self.lexical.search(query, self.cfg.candidates))
        translated = dict(self.lexical.search_groups(groups, self.cfg.candidates)) if groups else {}
        c = self.cfg
        if c.dense_by_language:
            dense = self._by_language(dense)
        if mode == "bm25":
            fused = _zfuse([(bm25, 1.0, n), (translated, c.translated_weight, n)]) if translated else bm25
            return fused, bm25, translated
        rankings = [
            (dense, c.dense_weight, 0),
            (bm25, c.bm25_weight, n),
            (translated, c.translated_weight, n),
            (tdense, c.translated_dense_weight, 0),
        ]
        if c.fusion == "rrf":
            return _rrf([(list(r), w) for r, w, _ in rankings], c.rrf_k), bm25, translated
        return _zfuse(rankings), bm25, translated

    def _result(self, scores: dict[int, float], k: int, top_cosine: float, turns: list[str]) -> SearchResult:
        question = turns[-1]
        best = sorted(scores, key=lambda cid: (-scores[cid], cid))[:k]
        rows = store.fetch_chunks(self.conn, best)
        hits = [
            Hit(
                rank,
                scores[cid],
                cid,
                rows[cid].file,
                rows[cid].line_start,
                rows[cid].line_end,
                rows[cid].heading_path,
                rows[cid].text,
                rows[cid].location,
            )
            for rank, cid in enumerate(best, start=1)
        ]
        unknown, names_in_top = self._name_evidence(question, hits[0].chunk_id if hits else None)
        self._load_units({h.chunk_id: h.text for h in hits})
        return SearchResult(hits, top_cosine, unknown, names_in_top, self._word_evidence(turns))

    def _load_units(self, texts: dict[int, str]) -> None:
        """The hits' stored unit vectors into `passage_vectors`' cache, so reading the passages
        with relevance codes costs dot products, not encoder passes (index/store.py)."""
        stored = store.fetch_unit_vectors(self.conn, list(texts), self.meta["dim"])
        for cid, vectors in stored.items():
            units = store.chunk_units(texts[cid])
            if len(units) == len(vectors):  # else: encoded afresh when asked
                self._passage_cache.update(zip(units, vectors))

    @staticmethod
    def _check(mode: str, k: int) -> None:
        if mode not in MODES:
            raise NotesRagError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if k < 1:
            raise NotesRagError(f"k must be at least 1, got {k}")

    # -- public --------------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> SearchResult:
        """The k best chunks for one question, with the dense top-1 cosine."""
        return self.search_conversation([query], k, mode)

    def search_conversation(self, turns: list[str], k: int = 5, mode: str = "hybrid") -> SearchResult:
        """The k best chunks for the last of the user's `turns`, informed by the earlier ones."""
        self._check(mode, k)
        self.refresh()
        signals, top_cosine = self.first_stage(turns, max(k, self.cfg.rerank_depth), mode)
        scores = signals.fused
        if self.reranker is not None and mode == "hybrid":
            ids, x = self.rerank_features(signals)
            reranked = dict(zip(ids, self.reranker.scores(x).tolist()))
            # the candidates past the reranked ones keep the first stage's order after them
            rest = sorted((c for c in scores if c not in reranked), key=lambda c: (-scores[c], c))
            floor = min(reranked.values(), default=0.0) - 1.0
            scores = {**reranked, **{c: floor - i for i, c in enumerate(rest)}}
        return self._result(scores, k, top_cosine, turns)

    def _name_evidence(self, question: str, top: int | None) -> tuple[tuple[str, ...], bool]:
        """The question's names (question.names) that occur in no chunk, in any form (stopwords
        like "What" are no names); and, when there are none, whether it asks about nothing but
        names that chunk `top` holds (question.only_names)."""
        holders = {name: self.lexical.query_words(name) for name in names(question)}
        unknown = tuple(n for n, found in holders.items() if found and not any(w.chunks for w in found))
        asked = only_names(question, STOPWORDS) if top is not None and not unknown else []
        return unknown, bool(asked) and all(top in w.chunks for n in asked for w in holders[n])

    def _word_evidence(self, turns: list[str]) -> tuple[str, ...]:
        """The last question's content words that no chunk holds (as BM25 finds a word: its form,
        folded form or stem, or one of its one-word translations), when they are at least
        `unknown_word_share` of its content words; () otherwise, and for a follow-up in a
        conversation, whose words lean on the questions before it."""
        share, question = self.cfg.unknown_word_share, turns[-1]
        if share is None or (len(turns) > 1 and is_follow_up(question)):
            return ()
        words = self.lexical.query_words(question)
        words = with_translations(self.lexical, words, self._translate(question, detect_lang(question)))
        # "kogo", "whom" name no topic; one- and two-letter tokens are pieces ("u" of "pipeline'u")
        words = [w for w in words if w.word not in QUESTION_WORDS and len(w.word) > 2]
        unknown = tuple(w.word for w in words if not len(w.chunks))
        return unknown if words and len(unknown) >= share * len(words) else ()

    def rerank_features(self, signals: Signals) -> tuple[list[int], np.ndarray]:
        """The first stage's top `rerank_depth` chunk ids and their reranking features."""
        ids = sorted(signals.fused, key=lambda cid: (-signals.fused[cid], cid))[: self.cfg.rerank_depth]
        # A chunk holding one of the question's rare words is always a candidate, however low
        # fusion put it: an exact match of a rare term (acronym, name, number) must get a hearing.
        ids += sorted({c for w in signals.words if rerank.is_rare(w) for c in w.chunks} - set(ids))
        ids += [c for c in self._best_per_language(signals.fused) if c not in ids]
        rows = store.fetch_chunks(self.conn, ids)
        texts = {c: r.text for c, r in rows.items()}
        headings = {c: " ".join(r.heading_path) for c, r in rows.items()}
        return ids, rerank.features(signals, ids, texts, headings)

    def _by_language(self, scores: dict[int, float]) -> dict[int, float]:
        """Cosines in standard deviations from their own language's candidates' mean, when the
        candidates hold both languages: the encoder's same-language bias (an English question's
        cosines to English chunks run higher) no longer decides between the languages; the
        question's own words and their translations do (BM25 of each)."""
        ids = list(scores)
        langs = self.lang_of(ids)
        if len(set(langs)) < 2:
            return scores
        out = {}
        for lang in set(langs):
            part = {c: scores[c] for c, x in zip(ids, langs) if x == lang}
            out.update(_zscores(part)[0])
        return out

    def _best_per_language(self, fused: dict[int, float]) -> list[int]:
        """Each language's `per_language_rerank` best-fused candidates, when the candidates hold
        more than one language: the other language's best passage gets a hearing even when
        same-language passages on the topic fill the reranked top."""
        m = self.cfg.per_language_rerank
        if m <= 0 or not fused:
            return []
        ranked = sorted(fused, key=lambda cid: (-fused[cid], cid))
        langs = self.lang_of(ranked)
        if len(set(langs)) < 2:
            return []
        return [c for lang in sorted(set(langs)) for c in [c for c, x in zip(ranked, langs) if x == lang][:m]]

    def first_stage(self, turns: list[str], n: int, mode: str) -> tuple[Signals, float]:
        """The first stage for the last of `turns`: the candidates' fused scores with the
        current question's own signals for the reranker (`Signals`), and the dense top-1 cosine."""
        turns = [t for t in turns if t.strip()]
        if not turns:
            raise NotesRagError("empty question")
        queries = [turns[-1]]
        earlier = turns[-1 - self.cfg.history_turns : -1]
        if earlier:
            queries.append(" ".join(earlier + [turns[-1]]))
        # A short follow-up ("A Llama 3?") has no language of its own: it is the conversation's.
        lang = detect_lang(" ".join(turns))
        groups = [self._translate(q, detect_lang(q, default=lang)) for q in queries]
        use_tdense = mode == "hybrid" and self.cfg.translated_dense_weight > 0
        ttexts = [" ".join(g[0] for g in gs) if use_tdense else "" for gs in groups]
        ranked = self._dense(queries + [t for t in ttexts if t], max(self.cfg.candidates, n))
        dense, extra = ranked[: len(queries)], iter(ranked[len(queries) :])
        tdense = [next(extra) if t else {} for t in ttexts]
        # Whether the notes answer is decided on the question as asked; only a follow-up
        # borrows the conversation's evidence (question.py).
        asked = dense[:1] if not (earlier and is_follow_up(turns[-1])) else dense
        top_cosine = max((max(d.values()) for d in asked if d), default=0.0)
        per_query = [self._fuse_query(q, d, mode, g, td) for q, d, g, td in zip(queries, dense, groups, tdense)]
        fused = per_query[0][0]
        if len(per_query) > 1:
            # The current question alone, and joined to the previous turns: a self-contained
            # question wins on its own, an elliptical follow-up through the joined one.
            fused = {}
            for (scores, _, _), w in zip(per_query, (1.0, self.cfg.history_weight)):
                for c, z in _zscores(scores)[0].items():
                    fused[c] = fused.get(c, 0.0) + w * z
        _, bm25, translated = per_query[0]
        words = []
        if mode == "hybrid":
            # A follow-up ("A Llama 3?") is about the conversation's words too, at half weight.
            words = self.lexical.query_words(turns[-1])
            if self.cfg.translated_coverage and groups[0]:
                words = with_translations(self.lexical, words, groups[0])
            own = {w.word for w in words}
            history = self.lexical.query_words(" ".join(earlier), self.cfg.history_word_weight)
            words += [w for w in history if w.word not in own]
        return Signals(fused, dense[0], bm25, translated, tdense[0], words), top_cosine
