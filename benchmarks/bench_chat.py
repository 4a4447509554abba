"""End-to-end latency of one chat turn: time to first token and generation speed (CPU by default).

    python benchmarks/bench_chat.py [--model models/] [--index corpus/.notes-rag] [--runs 5] [--json out.json]

A typical turn: k=4 retrieved passages (the model reads the top 3) after two earlier exchanges,
then a follow-up question, answered by the same `Assistant.stream` code path as `notes-rag chat`
(constrained copy-head decode, chat/writer.py). Time to first token counts from the question:
retrieval (query encoding + search), the model input and the prefill. Tokens/s is the decode
speed after the first token. The dense cosine threshold is disabled so the model always runs.
Targets (issue 22): first token ≤ 0.5 s, whole answer p50 ≤ 1.5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from notes_rag.chat.answer import Answer  # noqa: E402
from notes_rag.chat.assistant import AnswerConfig, Assistant  # noqa: E402
from notes_rag.chat.format import Turn  # noqa: E402
from notes_rag.fileio import atomic_write_text  # noqa: E402

HISTORY = [
    Turn("user", "Jakie są fazy przetwarzania modelu LLM?"),
    Turn(
        "assistant",
        "Najpierw jest wstępny trening modelu (pre-training) na dużym zbiorze tekstów, "
        "potem dostrajanie (fine-tuning) do konkretnych zadań. [1]",
    ),
    Turn("user", "Kto zaproponował matematyczny model neuronu?"),
    Turn("assistant", "1943 Warren McCulloch and Walter Pitts proponują matematyczny model neuronu [2]"),
]
QUESTION = "A kto zaproponował model perceptronu?"


def time_turn(assistant: Assistant) -> tuple[Answer, float]:
    """One turn through the streaming path; also the wall time to the first streamed text."""
    t0 = time.perf_counter()
    first = None
    for item in assistant.stream(HISTORY, QUESTION):
        if isinstance(item, Answer):
            return item, (first if first is not None else time.perf_counter()) - t0
        if first is None:
            first = time.perf_counter()
    raise AssertionError("no answer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the repo's models/)")
    ap.add_argument(
        "--index", type=Path, default=None, help="index folder (default: ./.notes-rag or ./corpus/.notes-rag)"
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--no-prior", action="store_true", help="decode without the unit scorer's prior (its peer)")
    ap.add_argument("--no-reranker", action="store_true", help="the prior without the unit reranker (its peer)")
    ap.add_argument("--free-units", action="store_true", help="decode without the whole-unit rule (its peer)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = AnswerConfig(k=4, max_new_tokens=args.max_new_tokens, abstain_threshold=-1.0, whole_units=not args.free_units)
    if args.no_prior:
        cfg.unit_prior_weight = 0.0
    cfg.unit_reranker = not args.no_reranker
    assistant = Assistant.open(args.index, args.model, cfg)
    time_turn(assistant)  # warm-up: first-call allocations, encoder and FAISS caches
    runs = [time_turn(assistant) for _ in range(args.runs)]

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    answers = [a for a, _ in runs]
    result = {
        "model": answers[0].model_id,
        "index": answers[0].index_id,
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "whole_units": cfg.whole_units,
        "unit_prior_weight": cfg.unit_prior_weight,
        "unit_reranker": assistant.reranker() is not None and bool(cfg.unit_prior_weight),
        "answer": answers[0].text,
        "passages": answers[0].read_passages,
        "retrieval_ms": med([a.timings.retrieval_ms for a in answers]),
        "ttft_s": med([a.timings.ttft_s for a in answers]),
        "first_text_s": med([t for _, t in runs]),
        "tokens_per_s": med([a.timings.tokens_per_s for a in answers]),
        "new_tokens": med([a.timings.new_tokens for a in answers]),
        "total_s": med([a.timings.total_s for a in answers]),
    }
    table = Table(
        title=f"chat turn, median of {args.runs} ({result['model']}, {result['threads']} threads)", title_justify="left"
    )
    for name in (
        "passages read",
        "retrieval ms",
        "first token s",
        "tok/s",
        "new tok",
        "total s",
    ):
        table.add_column(name, justify="right")

    def fmt(v, spec):
        return "–" if v is None else format(v, spec)

    table.add_row(
        str(result["passages"]),
        fmt(result["retrieval_ms"], ".0f"),
        fmt(result["ttft_s"], ".3f"),
        fmt(result["tokens_per_s"], ".1f"),
        fmt(result["new_tokens"], ".0f"),
        fmt(result["total_s"], ".2f"),
    )
    console = Console()
    console.print(table)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")


if __name__ == "__main__":
    main()
