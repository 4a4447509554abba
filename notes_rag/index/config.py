"""`IndexConfig`: the knobs of chunking and of the vector index, saved with every index.

Saved in the index's metadata so a later `index` run can tell whether the existing chunks were
made with the same settings (a change means a full rebuild, like a changed encoder).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


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
    def from_dict(cls, d: dict) -> "IndexConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def chunking_key(self) -> dict:
        """The settings that change which chunks a file produces."""
        return {k: getattr(self, k) for k in ("chunk_words", "max_block_words", "min_chunk_words", "overlap_words")}
