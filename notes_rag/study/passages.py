"""The passages a quiz draws from: every chunk of the index, or those retrieval finds for a topic.

Chunks are read straight from the live generation's SQLite (no FAISS, no encoder), so a quiz
across the notes starts without loading the retriever; only a topic needs retrieval.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from notes_rag.errors import NotesRagError


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    file: str
    line_start: int  # 1-based line of the chunk's first line in its file
    heading_path: tuple[str, ...]
    text: str
    lang: str

    @property
    def heading(self) -> str:
        return " › ".join(self.heading_path)

    @property
    def label(self) -> str:
        """The passage label of the chat format: `file › heading path`."""
        return f"{self.file} › {self.heading}" if self.heading else self.file


def all_passages(index_dir: Path) -> list[Passage]:
    """Every chunk of the index's live generation, in index order."""
    from notes_rag.index import store

    gen = store.current_generation(Path(index_dir))
    if gen is None:
        raise NotesRagError(f"no index at {index_dir}; build it with: notes-rag index NOTES_FOLDER")
    with closing(store.open_db(gen / "chunks.sqlite")) as conn:
        rows = conn.execute("SELECT id, file, line_start, heading_path, text, lang FROM chunks ORDER BY id").fetchall()
    return [Passage(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5]) for r in rows]


def topic_passages(retriever, topic: str, k: int) -> list[Passage]:
    """The k passages retrieval finds for `topic`; an error when none is about it: none shares
    a word stem with the topic and the dense top-1 cosine is under the retriever's calibrated
    abstention threshold (or there is no calibrated threshold, for another encoder)."""
    from notes_rag.text import stems

    res = retriever.search(topic, k=k)
    threshold = retriever.abstain_threshold
    close = threshold is not None and res.top_cosine >= threshold
    lexical = any(stems(topic) & stems(h.text) for h in res.hits)
    if not res.hits or not (close or lexical or res.names_in_top):
        raise NotesRagError(f"nothing in the notes about {topic!r}; try another topic or quiz without one")
    langs = {h.chunk_id: lang for h, lang in zip(res.hits, _langs(retriever, [h.chunk_id for h in res.hits]))}
    return [Passage(h.chunk_id, h.file, h.line_start, h.heading_path, h.text, langs[h.chunk_id]) for h in res.hits]


def _langs(retriever, ids: list[int]) -> list[str]:
    marks = ",".join("?" * len(ids))
    got = dict(retriever.conn.execute(f"SELECT id, lang FROM chunks WHERE id IN ({marks})", ids).fetchall())
    return [got.get(i, "en") for i in ids]
