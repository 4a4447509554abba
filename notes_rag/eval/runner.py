"""The runner of `notes-rag eval`: retrieval, the extractive baseline and the model's answers,
scored item by item.

Everything here works on plain data, so it can be tested without an index or a model: `run_eval`
takes a `retrieve_fn(turns) -> Retrieval` and an optional `answer_fn(turns) -> AnswerRecord`;
the CLI (`cli/eval.py`) wires them to the real retriever and the chat assistant. Next to the
GPT's answers the runner scores an extractive baseline (the chat's quote from the top retrieved
chunk, `chat.quote`: chosen by meaning with the retrieval encoder when `similarity` is given),
so the value the model adds is visible.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from notes_rag.chat.quote import Similarity, best_quote
from notes_rag.eval.matching import RETRIEVAL_DEPTH, evidence_files, first_hit_rank, is_hit, score_groups
from notes_rag.eval.qa_file import EvalItem
from notes_rag.question import retrieval_refuses


@dataclass
class RetrievedChunk:
    text: str
    file: str = ""


@dataclass
class Retrieval:
    """What `retrieve_fn` returns: chunks best first (up to RETRIEVAL_DEPTH) and the dense top-1
    cosine, the abstention signal (None when the retriever has no dense part)."""

    chunks: list[RetrievedChunk]
    top_cosine: float | None = None
    unknown_names: tuple[str, ...] = ()  # names in the question no chunk mentions: abstain
    names_in_top: bool = False  # it asks only about names the top chunk holds: no cosine check
    unknown_words: tuple[str, ...] = ()  # its content words no chunk holds, when off-topic: abstain


@dataclass
class AnswerRecord:
    """What `answer_fn` returns for the last of the turns."""

    text: str
    abstained: bool
    cited: list[int]  # passage numbers cited in the answer, 1-based into `passages`
    passages: list[str]  # texts of the passages the model was given, in prompt order
    ttft_s: float | None = None  # time to first token
    total_s: float | None = None  # whole answer, retrieval included; measured here when None
    answered_by: str | None = None  # "model" | "quote" | "abstain" | "retrieval" (abstained before the model)


@dataclass
class ScoredAnswer:
    text: str
    abstained: bool
    groups: list[bool]  # one per key-fact group (empty for unanswerable items)
    cited: list[int] = field(default_factory=list)
    cited_hits: list[bool] = field(default_factory=list)  # per cited number: holds the evidence
    ttft_s: float | None = None
    total_s: float | None = None
    answered_by: str | None = None
    key_facts: bool | None = field(init=False)  # all groups passed; None without groups

    def __post_init__(self):
        self.key_facts = all(self.groups) if self.groups else None


@dataclass
class ItemResult:
    id: str
    lang: str
    kind: str
    multi_turn: bool
    answerable: bool
    turns: list[str]
    evidence_files: list[str]
    retrieved_files: list[str]
    hit_rank: int | None
    retrieval_ms: float
    top_cosine: float | None
    baseline: ScoredAnswer
    answer: ScoredAnswer | None


def question_kind(item: EvalItem, files: list[str], file_lang: dict[str, str]) -> str:
    """same-language / cross-lingual by the question's language vs the evidence's note file(s)."""
    if not item.answerable:
        return "unanswerable"
    langs = {file_lang.get(f) for f in files} - {None}
    if not langs:
        return "evidence not found"
    return "same-language" if item.lang in langs else "cross-lingual"


def score_answer(item: EvalItem, rec: AnswerRecord) -> ScoredAnswer:
    hits = []
    for n in rec.cited:
        # A number outside the prompt's passages is a made-up citation: it cannot hold evidence.
        ok = item.answerable and 1 <= n <= len(rec.passages) and is_hit(item.evidence, rec.passages[n - 1])
        hits.append(bool(ok))
    return ScoredAnswer(
        text=rec.text,
        abstained=rec.abstained,
        groups=score_groups(rec.text, item.must),
        cited=list(rec.cited),
        cited_hits=hits,
        ttft_s=rec.ttft_s,
        total_s=rec.total_s,
        answered_by=rec.answered_by,
    )


def baseline_answer(
    item: EvalItem, ret: Retrieval, threshold: float | None, similarity: Similarity | None = None
) -> ScoredAnswer:
    """Extractive baseline: abstain when retrieval refuses (`question.retrieval_refuses`: the
    dense top-1 cosine under the retriever's threshold, or unknown names or words), else answer
    with the chat's quote (`chat.quote`: the sentence of the top chunk that matches the questions
    best by meaning, lexically without `similarity`)."""
    abstained = not ret.chunks or retrieval_refuses(ret, threshold)
    found = None if abstained else best_quote(" ".join(item.turns), [c.text for c in ret.chunks], similarity)
    text = found[0] if found else ""
    return ScoredAnswer(text=text, abstained=abstained, groups=score_groups(text, item.must))


def _timed_answer(item: EvalItem, answer_fn: Callable[[list[str]], AnswerRecord]) -> ScoredAnswer:
    t0 = time.perf_counter()
    rec = answer_fn(item.turns)
    if rec.total_s is None:
        rec.total_s = time.perf_counter() - t0
    return score_answer(item, rec)


def evaluate_item(
    item: EvalItem,
    retrieve_fn: Callable[[list[str]], Retrieval],
    answer_fn: Callable[[list[str]], AnswerRecord] | None,
    chunks: list[tuple[str, str]],
    file_lang: dict[str, str],
    threshold: float | None,
    similarity: Similarity | None = None,
) -> ItemResult:
    """Retrieval, baseline and (with `answer_fn`) the model's answer for one item."""
    t0 = time.perf_counter()
    ret = retrieve_fn(item.turns)
    retrieval_ms = (time.perf_counter() - t0) * 1000
    top = ret.chunks[:RETRIEVAL_DEPTH]
    files = evidence_files(item.evidence, chunks) if item.answerable else []
    answer = _timed_answer(item, answer_fn) if answer_fn is not None else None
    return ItemResult(
        id=item.id,
        lang=item.lang,
        kind=question_kind(item, files, file_lang),
        multi_turn=item.multi_turn,
        answerable=item.answerable,
        turns=item.turns,
        evidence_files=files,
        retrieved_files=[c.file for c in top],
        hit_rank=first_hit_rank(item.evidence, [c.text for c in top]) if item.answerable else None,
        retrieval_ms=retrieval_ms,
        top_cosine=ret.top_cosine,
        baseline=baseline_answer(item, ret, threshold, similarity),
        answer=answer,
    )


def run_eval(
    items: list[EvalItem],
    retrieve_fn: Callable[[list[str]], Retrieval],
    answer_fn: Callable[[list[str]], AnswerRecord] | None = None,
    *,
    chunks: Iterable[tuple[str, str]] = (),
    file_lang: dict[str, str] | None = None,
    threshold: float | None = None,
    similarity: Similarity | None = None,
    on_item: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Evaluate every item: retrieval, baseline and (with `answer_fn`) the model's answer.

    `chunks` are all indexed (file, text) pairs, used to find the file holding each evidence;
    `file_lang` maps a file to its language, for the same-language / cross-lingual split.
    """
    chunks = list(chunks)
    results = []
    for item in items:
        result = evaluate_item(item, retrieve_fn, answer_fn, chunks, file_lang or {}, threshold, similarity)
        results.append(result)
        if on_item is not None:
            on_item(result)
    return results
