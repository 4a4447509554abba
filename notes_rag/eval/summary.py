"""Summaries of `notes-rag eval` results: overall and per-group metrics, and the JSON report.

Every metric is a share (None where it has no items to count), MRR a mean; each comes with its
95% interval and counts (`eval.intervals.metric`: `name`, `name_ci`, `name_counts`).
docs/EVAL.md ("Metrics", "JSON report") says what each one means.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict

from notes_rag.eval.intervals import mean_metric, metric
from notes_rag.eval.matching import RETRIEVAL_DEPTH
from notes_rag.eval.runner import ItemResult, ScoredAnswer

# Retrieval hit@k for these k (MRR to RETRIEVAL_DEPTH).
HIT_AT = (1, 3, 5)
# The answer metrics a report table shows: column label -> key of an answer summary.
ANSWER_COLUMNS = {
    "key facts": "key_fact_recall",
    "groups": "group_recall",
    "abst. ok": "abstention_accuracy",
    "false abst.": "false_abstention",
    "cite prec.": "citation_precision",
    "by model": "answered_by_model",
}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def _answer_metrics(pairs: list[tuple[ItemResult, ScoredAnswer]]) -> dict:
    ans = [(r, a) for r, a in pairs if r.answerable]
    unans = [a for r, a in pairs if not r.answerable]
    groups = [g for _, a in ans for g in a.groups]
    answered = [a for _, a in ans if not a.abstained]
    cited = [h for a in answered for h in a.cited_hits]
    shown = [a for _, a in pairs if not a.abstained]
    return {
        **metric("key_fact_recall", sum(bool(a.key_facts) for _, a in ans), len(ans)),
        **metric("group_recall", sum(groups), len(groups)),
        **metric("abstention_accuracy", sum(a.abstained for a in unans), len(unans)),
        **metric("false_abstention", sum(a.abstained for _, a in ans), len(ans)),
        **metric("citation_precision", sum(cited), len(cited)),
        **metric("answers_citing", sum(bool(a.cited) for a in answered), len(answered)),
        # share of the answers shown (not abstentions) that our GPT wrote, not the quote fallback;
        # 0 items counted when the answer function did not say who answered
        **metric(
            "answered_by_model",
            sum(a.answered_by == "model" for a in shown),
            len(shown) if any(a.answered_by for _, a in pairs) else 0,
        ),
    }


def summarize(results: list[ItemResult]) -> dict:
    """Aggregate metrics of a set of results (None where a metric has no items to count)."""
    answerable = [r for r in results if r.answerable]
    ranks = [r.hit_rank for r in answerable]
    retrieval: dict = {}
    for h in HIT_AT:
        retrieval.update(metric(f"hit@{h}", sum(x is not None and x <= h for x in ranks), len(ranks)))
    retrieval.update(mean_metric(f"mrr@{RETRIEVAL_DEPTH}", [1 / x if x is not None else 0.0 for x in ranks]))
    out = {
        "n": len(results),
        "n_answerable": len(answerable),
        "retrieval": retrieval,
        "baseline": _answer_metrics([(r, r.baseline) for r in results]),
        "answer": None,
    }
    with_answers = [(r, r.answer) for r in results if r.answer is not None]
    if with_answers:
        out["answer"] = _answer_metrics(with_answers)
    ms = [r.retrieval_ms for r in results]
    ttft = [a.ttft_s for _, a in with_answers if a.ttft_s is not None]
    total = [a.total_s for _, a in with_answers if a.total_s is not None]
    out["latency"] = {
        "retrieval_ms_p50": _percentile(ms, 0.5),
        "retrieval_ms_p95": _percentile(ms, 0.95),
        "ttft_s_p50": _percentile(ttft, 0.5),
        "ttft_s_p95": _percentile(ttft, 0.95),
        "total_s_p50": _percentile(total, 0.5),
        "total_s_p95": _percentile(total, 0.95),
        "total_s_mean": statistics.fmean(total) if total else None,
    }
    return out


# Breakdowns reported next to "overall": name → function giving an item's group.
BREAKDOWNS: dict[str, Callable[[ItemResult], str]] = {
    "language": lambda r: r.lang,
    "kind": lambda r: r.kind,
    "turns": lambda r: "multi-turn" if r.multi_turn else "single-turn",
}


def report(results: list[ItemResult], meta: dict | None = None) -> dict:
    """The JSON-ready report: run metadata, overall and per-group summaries, per-item results."""
    breakdowns = {}
    for name, key in BREAKDOWNS.items():
        groups: dict[str, list[ItemResult]] = {}
        for r in results:
            groups.setdefault(key(r), []).append(r)
        breakdowns[name] = {g: summarize(rs) for g, rs in sorted(groups.items())}
    return {
        "meta": meta or {},
        "overall": summarize(results),
        "breakdowns": breakdowns,
        "items": [asdict(r) for r in results],
    }
