"""`notes-rag eval`: measure retrieval, the extractive baseline and the GPT's answers on a QA file.

The command only wires things together: it opens the index (and the model, with --model) as
`eval.backends.Backends`, runs them over the QA file, renders the summary as rich tables and
writes the full report as JSON. Scoring rules live in `eval/matching.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from notes_rag.cli import options
from notes_rag.cli.app import app
from notes_rag.eval.backends import Backends, eval_meta, open_backends, run_backends
from notes_rag.eval.qa_file import load_items
from notes_rag.eval.summary import ANSWER_COLUMNS, report
from notes_rag.fileio import atomic_write_json

console = Console()


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _with_ci(metrics: dict, key: str) -> str:
    """'0.43 [0.29–0.58]': a metric with its 95% interval (eval/intervals.py)."""
    ci = metrics.get(f"{key}_ci")
    return _fmt(metrics[key]) + (f" [dim][{ci[0]:.2f}–{ci[1]:.2f}][/]" if ci else "")


def _rows(rep: dict, keep: Callable[[dict], bool] = lambda s: True):
    """(group label, summary, starts a new section) for overall, then each breakdown's groups
    whose summary passes `keep`."""
    yield "overall", rep["overall"], False
    for groups in rep["breakdowns"].values():
        kept = [(g, s) for g, s in groups.items() if keep(s)]
        for i, (group, summary) in enumerate(kept):
            yield group, summary, i == 0


def _retrieval_table(rep: dict) -> Table:
    table = Table(title="Retrieval (answerable items; 95% intervals)", title_justify="left")
    for name in ("group", "n", "hit@1", "hit@3", "hit@5", "MRR@10"):
        table.add_column(name, justify="left" if name == "group" else "right")
    for group, s, section in _rows(rep, keep=lambda s: s["n_answerable"] > 0):
        if section:
            table.add_section()
        r = s["retrieval"]
        table.add_row(group, str(s["n_answerable"]), *(_with_ci(r, m) for m in ("hit@1", "hit@3", "hit@5", "mrr@10")))
    return table


def _answers_table(rep: dict, with_answers: bool) -> Table:
    title = "Answers: extractive baseline" + (" vs GPT" if with_answers else " (--no-answers)") + "; 95% intervals"
    table = Table(title=title, title_justify="left")
    table.add_column("group", no_wrap=True)
    table.add_column("system", no_wrap=True, min_width=8)
    for name in ("n", *ANSWER_COLUMNS):
        table.add_column(name, justify="right")
    systems = [("baseline", "baseline"), *([("GPT", "answer")] if with_answers else [])]
    for group, s, section in _rows(rep):
        if section:
            table.add_section()
        for i, (label, key) in enumerate(systems):
            metrics = s[key]
            table.add_row(
                group if i == 0 else "",
                label,
                str(s["n"]) if i == 0 else "",
                *(_with_ci(metrics, m) for m in ANSWER_COLUMNS.values()),
            )
    return table


def _latency_table(rep: dict) -> Table:
    lat = rep["overall"]["latency"]
    table = Table(title="Latency per item (p50 / p95)", title_justify="left")
    for name in ("retrieval ms", "first token s", "answer s (p50 / mean)"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{_fmt(lat['retrieval_ms_p50'])} / {_fmt(lat['retrieval_ms_p95'])}",
        f"{_fmt(lat['ttft_s_p50'])} / {_fmt(lat['ttft_s_p95'])}",
        f"{_fmt(lat['total_s_p50'])} / {_fmt(lat['total_s_mean'])}",
    )
    return table


def _verdict(item: dict, a: dict) -> tuple[str, bool]:
    """A short verdict on one answer and whether it is a failure."""
    if not item["answerable"]:
        return ("answered", True) if not a["abstained"] else ("abstained", False)
    if a["abstained"]:
        return "abstained", True
    passed = sum(a["groups"])
    return ("ok", False) if a["key_facts"] else (f"{passed}/{len(a['groups'])} facts", True)


def _misses_table(items: list[dict], with_answers: bool) -> Table:
    """Items whose evidence is not in the top 5, or (with answers) whose GPT answer failed; the
    baseline's verdict is shown for comparison, not used for selection (it fails often)."""
    what = "top-5 retrieval or the GPT's answer" if with_answers else "top-5 retrieval"
    table = Table(title=f"Items that failed {what}", title_justify="left")
    for name in ("id", "lang", "kind", "rank", "baseline", *(["GPT"] if with_answers else []), "question"):
        table.add_column(name)
    for item in items:
        missed = item["answerable"] and (item["hit_rank"] is None or item["hit_rank"] > 5)
        verdicts = [_verdict(item, item["baseline"])]
        if with_answers:
            verdicts.append(_verdict(item, item["answer"]))
            missed = missed or verdicts[-1][1]
        if missed:
            rank = "–" if item["hit_rank"] is None else str(item["hit_rank"])
            cells = [f"[red]{v}[/]" if bad else v for v, bad in verdicts]
            question = item["turns"][-1]
            question = question if len(question) <= 60 else question[:59] + "…"
            table.add_row(item["id"], item["lang"], item["kind"], rank, *cells, question)
    return table


def _run(items: list, backends: Backends) -> list:
    """`run_eval` with a progress bar."""
    progress = Progress(
        TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    with progress:
        task = progress.add_task("eval", total=len(items))
        return run_backends(items, backends, on_item=lambda _: progress.advance(task))


@app.command("eval")
def eval_cmd(
    qa_file: Path = typer.Argument(..., help="QA file (JSON Lines: id, lang, question|turns, must, evidence)."),
    index: Path = options.INDEX,
    model: Path = options.MODEL,
    k: int = options.K,
    mode: str = options.MODE,
    json_out: Path = typer.Option(None, "--json", help="Write the full report with per-item results here."),
    no_answers: bool = typer.Option(False, "--no-answers", help="Retrieval and the extractive baseline only."),
    passages: int = typer.Option(
        None, "--passages", help="Top retrieved passages the model reads (default: the chat's)."
    ),
    no_constrain: bool = typer.Option(
        False, "--no-constrain", help="Decode without the passage-words constraint (to measure it)."
    ),
) -> None:
    """Score retrieval, an extractive baseline and the GPT's answers on a QA file.

    Example: notes-rag eval qa.jsonl --json eval.json
    """
    items = load_items(qa_file)
    settings = {"passages": passages, "constrain": False if no_constrain else None}
    overrides = {k_: v for k_, v in settings.items() if v is not None}
    backends = open_backends(index, model, k, mode, answers=not no_answers, overrides=overrides)
    try:
        results = _run(items, backends)
    finally:
        backends.close()
    rep = report(results, eval_meta(qa_file, k, mode, backends))
    with_answers = backends.answer_fn is not None
    console.print(_retrieval_table(rep))
    console.print(_answers_table(rep, with_answers))
    console.print(_latency_table(rep))
    console.print(_misses_table(rep["items"], with_answers))
    if json_out is not None:
        atomic_write_json(json_out, rep)
        console.print(f"report written to {json_out}")
