"""All eval sets in one run, side by side: what `benchmarks/eval_all.py` prints and docs/EVAL.md keeps.

A number measured on one set says little about the next user's notes; the same metrics on
several sets, each with its 95% interval, say how far it carries. `run_all` indexes each set's
notes into a work folder (re-embedding only changed files on a second run), scores the set with
`eval.backends` exactly as `notes-rag eval` does, and returns per-set summaries; a set whose files
are missing is reported as skipped with the reason, not an error. A set marked `split` is also
summarized on its fit half and its test half (`eval.splits.halves`), so a constant fitted on the
first half is judged on the second.

    result = run_all([EvalSet("dev", qa, notes)], Path("runs/eval_all"), answers=False)
    print(markdown(result))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from notes_rag.eval.backends import eval_meta, open_backends, run_backends
from notes_rag.eval.qa_file import EvalItem, load_items
from notes_rag.eval.runner import ItemResult
from notes_rag.eval.splits import halves
from notes_rag.eval.summary import ANSWER_COLUMNS, summarize


@dataclass(frozen=True)
class EvalSet:
    name: str
    qa: Path  # QA file (docs/EVAL.md format)
    notes: Path  # the notes folder its evidence is in
    split: bool = False  # also report the fit and test halves (eval.splits)


def unavailable(s: EvalSet) -> str | None:
    """Why the set cannot run (its QA file or notes folder is missing), or None."""
    if not Path(s.qa).is_file():
        return f"no QA file {s.qa}"
    if not Path(s.notes).is_dir():
        return f"no notes folder {s.notes}"
    return None


def build_index(s: EvalSet, work_dir: Path, encoder, encoder_path: str | None = None) -> Path:
    """The set's index under `work_dir`/NAME/index, updated from its notes."""
    from notes_rag.index.build import update_index

    index = Path(work_dir) / s.name / "index"
    update_index(Path(s.notes), index, encoder, encoder_path)
    return index


def _answered_by(results: list[ItemResult]) -> dict[str, int]:
    """How many shown answers came from each path (model, quote, abstain, retrieval)."""
    return dict(Counter(r.answer.answered_by or "?" for r in results if r.answer is not None))


def _summaries(s: EvalSet, items: list[EvalItem], results: list[ItemResult]) -> dict[str, dict]:
    """Column label -> summary: the whole set, and with `split` its fit and test halves."""
    out = {s.name: results}
    if s.split:
        fit_ids = {item.id for item in halves(items)[0]}
        out[f"{s.name} fit half"] = [r for r in results if r.id in fit_ids]
        out[f"{s.name} test half"] = [r for r in results if r.id not in fit_ids]
    return {label: {**summarize(rs), "answered_by": _answered_by(rs)} for label, rs in out.items()}


def evaluate_set(
    s: EvalSet,
    index: Path,
    model: Path | None,
    answers: bool,
    k: int,
    mode: str,
    on_item: Callable[[ItemResult], None] | None = None,
) -> dict:
    """One set scored with the index and (with `answers`) the model: meta and summaries."""
    items = load_items(s.qa)
    backends = open_backends(index, model, k, mode, answers=answers)
    try:
        results = run_backends(items, backends, on_item=on_item)
    finally:
        backends.close()
    return {"meta": eval_meta(Path(s.qa), k, mode, backends), "summaries": _summaries(s, items, results)}


def run_all(
    sets: list[EvalSet],
    work_dir: Path,
    *,
    model: Path | None = None,
    answers: bool = True,
    k: int = 5,
    mode: str = "hybrid",
    encoder=None,
    encoder_path: str | None = None,
    on_set: Callable[[EvalSet, int], None] | None = None,
    on_item: Callable[[ItemResult], None] | None = None,
) -> dict:
    """Every available set indexed and scored: {"sets": {name: {...} | {"skipped": why}}}.
    `encoder` embeds the notes (default: the index's default encoder, loaded once when needed);
    `on_set(set, n_items)` is called before each set runs."""
    out: dict = {"sets": {}}
    for s in sets:
        why = unavailable(s)
        if why is not None:
            out["sets"][s.name] = {"skipped": why}
            continue
        if encoder is None:
            from notes_rag.index.encoder import load_encoder

            encoder = load_encoder(encoder_path)
        index = build_index(s, work_dir, encoder, encoder_path)
        if on_set is not None:
            on_set(s, len(load_items(s.qa)))
        out["sets"][s.name] = evaluate_set(s, index, model, answers, k, mode, on_item)
    return out


# The side-by-side table: (row label, summary section, metric key).
RETRIEVAL_ROWS = [(f"hit@{h}", "retrieval", f"hit@{h}") for h in (1, 3, 5)] + [("MRR@10", "retrieval", "mrr@10")]
ANSWER_ROWS = [(label, "answer", key) for label, key in ANSWER_COLUMNS.items()] + [
    ("baseline key facts", "baseline", "key_fact_recall"),
    ("baseline false abst.", "baseline", "false_abstention"),
    ("baseline abst. ok", "baseline", "abstention_accuracy"),
]


def _cell(summary: dict, section: str, key: str) -> str:
    metrics = summary.get(section) or {}
    value, ci = metrics.get(key), metrics.get(f"{key}_ci")
    if value is None:
        return "–"
    return f"{value:.2f} [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else f"{value:.2f}"


def _ms(v) -> str:
    return "–" if v is None else f"{v:.0f}"


def _s(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def columns(result: dict) -> dict[str, dict]:
    """Column label -> summary, every set's rows in order (skipped sets left out)."""
    return {label: summ for r in result["sets"].values() if "summaries" in r for label, summ in r["summaries"].items()}


def table_rows(result: dict) -> list[tuple[str, list[str]]]:
    """(row label, one cell per column of `columns`): counts, retrieval, answers, latency."""
    cols = list(columns(result).values())
    rows = [("items (answerable)", [f"{c['n']} ({c['n_answerable']})" for c in cols])]
    rows += [(label, [_cell(c, sec, key) for c in cols]) for label, sec, key in RETRIEVAL_ROWS]
    if any(c.get("answer") for c in cols):
        rows += [(label, [_cell(c, sec, key) for c in cols]) for label, sec, key in ANSWER_ROWS]
        by = [", ".join(f"{k} {n}" for k, n in sorted(c["answered_by"].items())) or "–" for c in cols]
        rows.append(("answered by (items)", by))
    else:
        rows += [(label, [_cell(c, sec, key) for c in cols]) for label, sec, key in ANSWER_ROWS if sec == "baseline"]
    lat = [c["latency"] for c in cols]
    rows.append(
        ("retrieval ms p50 / p95", [f"{_ms(x['retrieval_ms_p50'])} / {_ms(x['retrieval_ms_p95'])}" for x in lat])
    )
    if any(x["total_s_p50"] is not None for x in lat):
        rows.append(("answer s p50 / p95", [f"{_s(x['total_s_p50'])} / {_s(x['total_s_p95'])}" for x in lat]))
    return rows


def markdown(result: dict) -> str:
    """The side-by-side table as markdown, with a line per skipped set."""
    labels = list(columns(result))
    lines = ["| | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in table_rows(result)]
    skipped = [f"- {name}: skipped ({r['skipped']})" for name, r in result["sets"].items() if "skipped" in r]
    return "\n".join(lines + ([""] + skipped if skipped else []))
