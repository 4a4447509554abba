"""Which line answers, read jointly: a cross-encoder over the question and one unit in its place.

The unit scorer (model/unit_scorer.py) compares the question's vector with each unit's: the two
texts are encoded apart, so "the line under a heading that restates the question" is seen only
through hand-made neighbour features. This reranker reads the question and a candidate unit
*together*, with the unit's title line and the line before it (`pair_text`), through the
retrieval encoder's own transformer (multilingual-e5-small with the aligned layers,
index/encoder_cache.py) whose top layers were fine-tuned to pick the line that answers, and a
linear head over the mean of its last states.

- It re-scores the scorer's top `TOP_K` units of a turn, each one encoder pass of ~50 tokens
  (numpy, index/bert_encoder.py; ~0.2 s a turn on two cores), and its score is added to
  the scorer's (chat/turn_input.py `unit_prior`): the sum is the first unit's prior that our GPT's
  copy attention is weighed with. A unit outside the top K gets the lowest reranked score.
- Weights: `models/unit-reranker.safetensors` (fp16: the fine-tuned layers, `head.weight`,
  `head.bias`) and its JSON header, in the encoder-delta format (index/encoder_delta.py: sha256
  checked, base encoder named). They are applied to the query encoder's weights in memory
  (`BertEncoder.with_layers`), so nothing more is cached on disk. Fitted by
  `benchmarks/unit_reranker_fit.py` on notes_qa's train notes and the kit's QA items (never
  notes_qa's val/test notes, never dev).
- For an encoder the weights were not fitted on (a custom `--encoder`, tests' tiny ones) there is
  no reranker (`for_encoder` gives None) and the scorer alone is the prior, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from notes_rag import fileio
from notes_rag.errors import NotesRagError
from notes_rag.text import looks_like_title

log = logging.getLogger(__name__)

FILE = "unit-reranker.safetensors"
ENV = "NOTES_RAG_UNIT_RERANKER"
# Each unit shown costs one encoder pass (~30 ms on two cores). 6: on notes_qa's train notes the
# scorer's top 6 units hold the answer for 0.93 of the questions whose answer line was read (top 4
# 0.87, top 8 0.95); on the val notes top 6 and top 8 give the same first units (57 of 104 right,
# top 4 57, top 5 56), and 6 costs ~185 ms a turn there against ~250 ms (2026-12-08, Intel Xeon).
TOP_K = 6
_BATCH = 4  # pairs a forward pass: less padding than one batch of all (~15% faster, same scores)
_TITLE_WORDS, _PREV_WORDS, _UNIT_WORDS = 16, 30, 60  # the pair's parts, kept under ~120 tokens


def pair_text(query: str, units: list[str], i: int) -> str:
    """What the reranker reads for unit `i` of a passage's `units`: the question, then the unit's
    title line (the nearest line above it that looks like a title, when it is not the line just
    before), the line before it, and the unit after a `»`. One rule for the fit and the chat."""
    prev = units[i - 1] if i > 0 else ""
    title = next((units[j] for j in range(i - 1, -1, -1) if looks_like_title(units[j])), "")
    context = ""
    if title and title != prev:
        context += " ".join(title.split()[:_TITLE_WORDS]) + " … "
    if prev:
        context += " ".join(prev.split()[-_PREV_WORDS:]) + " "
    return f"query: {query} passage: {context}» {' '.join(units[i].split()[:_UNIT_WORDS])}"


@dataclass(frozen=True)
class UnitReranker:
    encoder: object  # index/bert_encoder.py BertEncoder with the fine-tuned layers
    head: np.ndarray  # (hidden,)
    bias: float

    def scores(self, query: str, units: list[list[str]], picks: list[tuple[int, int]]) -> np.ndarray:
        """Scores of the units `picks` ((passage, unit) pairs of `units`), higher: more likely
        the line that answers `query`."""
        if not picks:
            return np.zeros(0, np.float32)
        texts = [pair_text(query, units[p], i) for p, i in picks]
        pooled = self.encoder.encode(texts, batch_size=_BATCH)
        return (pooled @ self.head + self.bias).astype(np.float32)


def release_file() -> Path | None:
    """The weights the chat uses: `$NOTES_RAG_UNIT_RERANKER` if set (`none`: no reranker; how the
    benchmarks compare fits), else the release's `models/unit-reranker.safetensors` when there is
    one."""
    return fileio.release_file(FILE, ENV, "unit reranker")


def load(encoder, path: Path | None = None) -> UnitReranker:
    """The reranker over `encoder` (a `BertEncoder`) from `path`; one NotesRagError line when the
    file is damaged or does not fit the encoder."""
    from notes_rag.index.encoder_delta import read_delta

    path = path or release_file()
    if path is None:
        raise NotesRagError(f"no unit reranker: models/{FILE} is missing and {ENV} names none")
    tensors, _ = read_delta(path, "unit reranker")
    head, bias = tensors.pop("head.weight", None), tensors.pop("head.bias", None)
    if head is None or bias is None:
        raise NotesRagError(f"unit reranker {path} has no head; refit it with benchmarks/unit_reranker_fit.py")
    try:
        twin = encoder.with_layers(tensors)
    except ValueError as e:
        raise NotesRagError(f"unit reranker {path} does not fit the encoder: {e}") from None
    return UnitReranker(twin, np.asarray(head, np.float32).reshape(-1), float(np.asarray(bias).reshape(-1)[0]))


def for_encoder(encoder, encoder_name: str, path: Path | None = None) -> UnitReranker | None:
    """The release's reranker when it was fitted on `encoder` (its header's `base_encoder` is
    `encoder_name`, the index's encoder id) and `encoder` is the numpy `BertEncoder`; else None."""
    from notes_rag.index.bert_encoder import BertEncoder
    from notes_rag.index.encoder_delta import read_header

    path = path or release_file()
    if path is None or not isinstance(encoder, BertEncoder):
        return None
    if read_header(path, "unit reranker").get("base_encoder") != encoder_name:
        log.info("unit reranker %s was fitted on another encoder than %s: the scorer alone ranks", path, encoder_name)
        return None
    return load(encoder, path)
