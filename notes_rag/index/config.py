"""The knobs of an index: `IndexConfig` for building it, `RetrievalConfig` for searching it.

`IndexConfig` is saved in the index's metadata so a later `index` run can tell whether the
existing chunks were made with the same settings (a change means a full rebuild, like a changed
encoder). Kept apart from the index code so that the CLI reads the defaults without loading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

MODES = ("hybrid", "dense", "bm25")  # retrieval modes: dense and BM25 fused, or one of them alone
DEFAULT_DICT_DIR = Path("/usr/share/dictd")  # where Debian's dict-freedict-* packages install


@dataclass(frozen=True)
class IndexConfig:
    # ~120 words: the answering GPT reads k=4-5 passages in a ~1k-token context.
    chunk_words: int = 120
    # A single block up to this many words stays whole rather than being split at sentences.
    max_block_words: int = 180
    # A heading starts a new chunk only once the current one has this many words, so tiny
    # sections are merged with their neighbours instead of becoming near-empty chunks.
    min_chunk_words: int = 40
    # Trailing sentences/blocks (at most this many words) repeated at the start of the next chunk
    # of the same section, so a fact that straddles a boundary is whole in one of them.
    overlap_words: int = 25
    # Below this many chunks the dense index is exact (flat); above, an inverted-file index: about
    # sqrt(n) k-means lists, of which a query scans `ivf_nprobe`. IVF rather than HNSW because it
    # builds fast on two cores (1M vectors in about a minute; HNSW needed over ten minutes for 150k),
    # at ~1 ms a query and recall@10 above 0.95 (docs/BENCHMARKS.md).
    approx_threshold: int = 50_000
    ivf_nprobe: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def chunking_key(self) -> dict:
        """The settings that change which chunks a file produces."""
        return {k: getattr(self, k) for k in ("chunk_words", "max_block_words", "min_chunk_words", "overlap_words")}


@dataclass(frozen=True)
class RetrievalConfig:
    # "zscore": weighted sum of each ranking's scores in standard deviations (measured better
    # than rank fusion on the dev questions, see docs/BENCHMARKS.md); "rrf": weighted
    # reciprocal rank fusion, sum of w / (rrf_k + rank).
    # The weights were chosen on dev and checked away from it (benchmarks/constants_fit.py:
    # external corpus + dev2 fit half, mean MRR@10; docs/EVAL.md): bm25_weight 1.5 -0.006,
    # translated_weight 1.0 +0.002, translated_dense_weight 0.25 -0.0004: under MIN_GAIN 0.005, kept.
    fusion: str = "zscore"
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    rrf_k: int = 60
    # Candidates taken from each ranking before fusion.
    candidates: int = 50
    # A BM25 list shorter than `candidates` is z-scored as if padded with zero scores, so the
    # one chunk holding a rare term ("RoPE") stands out instead of scoring +1 in a list of two.
    pad_lexical: bool = True
    # Conversation: how many previous user turns join the current question, and the weight of that
    # joined query's ranking relative to the current question's own (1.0).
    history_turns: int = 2
    history_weight: float = 1.0
    # Below this dense top-1 cosine the notes most likely do not answer the question
    # (multilingual-e5-small with the release's encoder delta, models/encoder-delta.*). Fitted
    # 2026-12-02 away from dev (benchmarks/constants_fit.py --no-ranking, indexes built with the
    # delta) on the external corpus (308 answerable, 89 unanswerable held-out kit questions) and
    # dev2's fit half (57 answerable): the threshold refusing the most unanswerable ones at false
    # abstention <= 0.05 in each set, besides the questions the names rule decides
    # (`SearchResult.unknown_names`, `names_in_top`). The aligned encoder's cosines run higher:
    # the plain model's 0.812 refuses none of those questions with it. docs/EVAL.md, "Constants
    # and what they were fitted on"; docs/benchmarks/constants_fit_encoder.json.
    abstain_threshold: float = 0.859
    # Off-topic questions in everyday words ("Jak ugotować rosół?") can embed close enough to the
    # notes to pass the cosine (e5 cosines of eval_sets/off_topic's 60 hand-written questions
    # spread over 0.79-0.88). Retrieval also refuses a question when at least this share of its
    # content words occur in no chunk, in any form or one-word translation
    # (`SearchResult.unknown_words`); None turns it off. FITTED 2026-12-07 on notes_qa's val notes
    # (14 notes, 94 answerable single questions; benchmarks/off_topic.py and notes_qa_heldout.py):
    # the share refusing the most off-topic questions while adding no false abstention there.
    # 0.5 added 0.085 (a small index misses many paraphrase words: "Who decides when the agent
    # is switched on?"), 0.67 added 0.011, 1.0 (every content word unknown) none, refusing 0.87
    # of the off-topic questions against 0.62 without the gate. docs/EVAL.md, "Off-topic questions".
    unknown_word_share: float | None = 1.0
    # Bilingual query expansion (see `bilingual`): the question's words translated by the
    # FreeDict dictionaries in `dict_dir` give a third ranking, BM25 of the translation, so an
    # English question finds Polish notes lexically and the reverse; it weighs less than the
    # question's own words (dictionary translation is noisy). Weighting it by the share of the
    # notes in the other language was measured worse on the dev questions (docs/BENCHMARKS.md).
    # Without the dictionaries (apt install dict-freedict-eng-pol dict-freedict-pol-eng)
    # retrieval is exactly as with bilingual=False.
    bilingual: bool = True
    dict_dir: str = str(DEFAULT_DICT_DIR)
    # The word lexicon file (`lexicon`); "" is the one packaged beside the module. Another path
    # is for comparing lexicons (benchmarks/crosslingual_ablation.py).
    lexicon: str = ""
    translated_weight: float = 0.5
    # The translated words also go through the dense encoder ("query: " + first translation of
    # each word): a same-language view for mE5, which matches across languages less well than
    # within one. Same weight as the translated BM25 ranking; on the dev questions it adds
    # cross-lingual hit@5 0.82 -> 0.91 and changes no other group's hit@1/hit@5.
    translated_dense_weight: float = 0.5
    # Second stage (`rerank`): the fused top `rerank_depth` reordered by the learned reranker
    # (hybrid mode only; dense and bm25 stay single-signal rankings for comparison). Chosen on
    # dev, then checked away from it (benchmarks/constants_fit.py, external corpus + dev2 fit
    # half, mean MRR@10): rerank off -0.008, depth 10 -0.005, depth 30 the same; kept.
    rerank: bool = True
    rerank_depth: int = 20
    # Both languages in the candidates (issue #23): when the notes hold both languages, the
    # dense ranking also takes the `per_language` best chunks of each language, and the
    # reranker also sees the `per_language_rerank` best-fused chunks of each language, so the
    # other language's best passage is not outranked out of the list by same-language ones
    # (mE5 ranks a same-language passage on the topic above the answering one in the other
    # language). 0 turns either off. Not fitted: 10 and 3 were set before measuring (a handful
    # per language is what the reranker can afford); alone, the step changed no hit@5 on dev2's
    # fit half (it is what lets the next two reach the passage).
    per_language: int = 10
    per_language_rerank: int = 3
    # The dense ranking fused after normalizing each language's cosines apart (search._by_language),
    # and the reranker's coverage features counting a chunk that holds a translation of a question
    # word as holding the word (bilingual.with_translations). Chosen on dev2's fit half
    # (benchmarks/crosslingual_ablation.py, 2026-12-02): cross-lingual hit@5 0.60 -> 0.80 each,
    # 0.87 together, same-language hit@5 1.00 kept; checked on the external corpus (docs/EVAL.md,
    # "Cross-lingual retrieval").
    dense_by_language: bool = True
    translated_coverage: bool = True
    # In a conversation the reranker also counts the previous turns' words, at this share of
    # their weight (the first stage likewise joins them to the question).
    history_word_weight: float = 0.5
