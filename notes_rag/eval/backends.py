"""The index and the model as `notes-rag eval` uses them: callables for `eval.runner.run_eval`.

`open_backends` opens the retriever (and the chat assistant on it) and adapts both to the
runner's plain-data interface; `run_backends` scores a QA file's items with them, and
`eval_meta` is the report's header. The CLI (`cli/eval.py`) and the speedrun's dev evaluation
(`speedrun/stages.py`) share them, so both score answers the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from notes_rag.chat.assistant import AnswerConfig, Assistant
from notes_rag.chat.quote import Similarity
from notes_rag.errors import NotesRagError
from notes_rag.eval.matching import RETRIEVAL_DEPTH
from notes_rag.eval.qa_file import EvalItem
from notes_rag.eval.runner import AnswerRecord, ItemResult, Retrieval, RetrievedChunk, run_eval
from notes_rag.model.release import resolve_model


@dataclass
class Backends:
    """What the runner needs from the index and the model, plus identifiers for the report."""

    retrieve_fn: Callable[[list[str]], Retrieval]
    answer_fn: Callable[[list[str]], AnswerRecord] | None
    chunks: list[tuple[str, str]]  # every indexed (file, chunk text)
    file_lang: dict[str, str]
    threshold: float | None  # the retriever's abstention threshold on the dense top-1 cosine
    similarity: Similarity | None = None  # the encoder's cosines, for the baseline's quote
    meta: dict = field(default_factory=dict)
    close: Callable[[], None] = lambda: None  # called when the run is over: closes the index


def open_backends(
    index: Path | None, model: Path | None, k: int, mode: str, answers: bool, overrides: dict | None = None
) -> Backends:
    """Open the index (and, with `answers`, the model) and adapt them to the runner's callables."""
    from notes_rag.index.search import Retriever  # loads FAISS: only when the command runs

    retriever = Retriever.open(index)

    def retrieve_fn(turns: list[str]) -> Retrieval:
        res = retriever.search_conversation(turns, k=RETRIEVAL_DEPTH, mode=mode)
        chunks = [RetrievedChunk(h.text, h.file) for h in res.hits]
        return Retrieval(chunks, res.top_cosine, res.unknown_names, res.names_in_top, res.unknown_words)

    answer_fn, meta = None, {}
    if answers:
        assistant = _open_assistant(retriever, model, k, mode, overrides)
        if assistant is not None:
            answer_fn = _answer_adapter(assistant)
            meta = {"model": assistant.model_id, "model_path": str(resolve_model(model).resolve())}
    return Backends(
        retrieve_fn=retrieve_fn,
        answer_fn=answer_fn,
        chunks=retriever.chunks(),
        file_lang=retriever.file_langs(),
        threshold=retriever.abstain_threshold,
        similarity=retriever.similarity,
        meta={"index": str(retriever.index_dir.resolve()), "encoder": retriever.meta["encoder"], **meta},
        close=retriever.close,
    )


def _open_assistant(
    retriever, model: Path | None, k: int, mode: str, overrides: dict | None = None
) -> Assistant | None:
    """The chat pipeline on the already open retriever; without --model and without a released
    model, None (retrieval and the baseline are still worth scoring)."""
    try:
        resolve_model(model)
    except NotesRagError as e:
        if model is not None:
            raise
        Console(stderr=True).print(f"[yellow]note:[/] {e}; scoring retrieval and the extractive baseline only")
        return None
    cfg = AnswerConfig(k=k, mode=mode, **(overrides or {}))
    return Assistant.open(model=model, cfg=cfg, retriever=retriever)


def _answer_adapter(assistant: Assistant) -> Callable[[list[str]], AnswerRecord]:
    """Answer every turn in order (as `ask --turns` does) and report the last one. Made-up
    citation numbers are passed on, so citation precision counts them as misses."""

    def answer_fn(turns: list[str]) -> AnswerRecord:
        _, ans = assistant.ask_turns(turns)
        return AnswerRecord(
            text=ans.text,
            abstained=ans.abstained,
            cited=ans.cited + ans.invalid_citations,
            passages=[s.text for s in ans.prompt_passages],
            ttft_s=ans.timings.ttft_s,
            total_s=ans.timings.total_s,
            answered_by="retrieval" if ans.abstain_reason == "retrieval" else ans.answered_by,
        )

    return answer_fn


def run_backends(
    items: list[EvalItem], backends: Backends, on_item: Callable[[ItemResult], None] | None = None
) -> list[ItemResult]:
    """`run_eval` over `items` with the opened backends."""
    return run_eval(
        items,
        backends.retrieve_fn,
        backends.answer_fn,
        chunks=backends.chunks,
        file_lang=backends.file_lang,
        threshold=backends.threshold,
        similarity=backends.similarity,
        on_item=on_item,
    )


def eval_meta(qa_file: Path, k: int, mode: str, backends: Backends) -> dict:
    """The report's `meta`: what was scored, when, with which settings, index and model."""
    return {
        "qa_file": str(qa_file),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "k": k,
        "mode": mode,
        "answers": backends.answer_fn is not None,
        "baseline_threshold": backends.threshold,
        **backends.meta,
    }
