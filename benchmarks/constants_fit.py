"""Fit the retrieval-side constants away from dev: fusion and reranker settings, then the abstention cosine.

    python benchmarks/eval_all.py --no-answers --sets external,dev2     # builds the indexes once
    python benchmarks/constants_fit.py [--json docs/benchmarks/constants_fit.json]

Fit sets (never dev, never dev2's test half): the external reading corpus (held-out kit articles
as notes, `external_corpus.py`, with its unanswerable questions) and the fit half of dev2
(`notes_rag.eval.splits.halves`), each over its index in `runs/eval_all/`; a set whose files
are missing is left out. Two steps:

1. **Ranking.** One pass of coordinate search over `GRID` (each `RetrievalConfig` field in turn,
   the others at their best so far), scored by the mean over fit sets of MRR@10 (answerable
   items). A value replaces the current one only when it gains more than `MIN_GAIN`: a smaller
   difference is within one item of a set this size.
2. **Abstention.** At the chosen settings, the dense top-1 cosine threshold that refuses the most
   unanswerable fit questions while refusing at most `MAX_FALSE_ABSTENTION` of the answerable
   ones *in every fit set*, at the middle of the gap between neighbouring cosines. Questions
   refused on their names (`unknown_names`) or answered on them (`names_in_top`) whatever the
   cosine take no part; how often the names rule itself refuses is reported per set.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval_dev import MAX_FALSE_ABSTENTION  # noqa: E402

from notes_rag.eval.matching import RETRIEVAL_DEPTH, first_hit_rank  # noqa: E402
from notes_rag.eval.qa_file import load_items  # noqa: E402
from notes_rag.eval.splits import halves  # noqa: E402
from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.index.config import RetrievalConfig  # noqa: E402
from notes_rag.index.search import Retriever  # noqa: E402

GRID = {  # the values tried besides the current one (a pass costs ~2 min per value on 2 busy cores)
    "rerank": [False],
    "rerank_depth": [10, 30],
    "bm25_weight": [1.5],
    "translated_weight": [1.0],
    "translated_dense_weight": [0.25],
}
MIN_GAIN = 0.005


def fit_sets(work: Path) -> dict[str, tuple[list, Path]]:
    """Name -> (items, index) of the fit sets present in `work`."""
    out = {}
    ext = work / "external"
    if (ext / "qa.jsonl").is_file() and (ext / "index").is_dir():
        out["external"] = (load_items(ext / "qa.jsonl"), ext / "index")
    dev2 = ROOT / "eval_sets" / "dev2" / "qa.jsonl"
    if dev2.is_file() and (work / "dev2" / "index").is_dir():
        out["dev2 fit half"] = (halves(load_items(dev2))[0], work / "dev2" / "index")
    return out


def measure(cfg: RetrievalConfig, sets: dict) -> dict[str, dict]:
    """Per set: MRR@10 of the answerable items, and each item's (answerable, cosine, names verdict)."""
    out = {}
    for name, (items, index) in sets.items():
        r = Retriever.open(index, cfg=cfg)
        rr, rows = [], []
        for item in items:
            res = r.search_conversation(item.turns, k=RETRIEVAL_DEPTH)
            if item.answerable:
                rank = first_hit_rank(item.evidence, [h.text for h in res.hits])
                rr.append(1 / rank if rank else 0.0)
            names = "unknown" if res.unknown_names else "in top" if res.names_in_top else ""
            rows.append((item.answerable, res.top_cosine, names))
        r.close()
        out[name] = {"mrr": sum(rr) / len(rr) if rr else 0.0, "rows": rows}
    return out


def objective(m: dict) -> float:
    return sum(s["mrr"] for s in m.values()) / len(m)


def fit_ranking(sets: dict) -> tuple[RetrievalConfig, list[dict], dict]:
    cfg = RetrievalConfig()
    best = measure(cfg, sets)
    log = [{"config": "default", "objective": objective(best), **{n: s["mrr"] for n, s in best.items()}}]
    print(f"default: {log[0]}")
    for field, values in GRID.items():
        for value in values:
            if value == getattr(cfg, field):
                continue
            trial = dataclasses.replace(cfg, **{field: value})
            m = measure(trial, sets)
            entry = {"config": f"{field}={value}", "objective": objective(m), **{n: s["mrr"] for n, s in m.items()}}
            log.append(entry)
            print(entry)
            if objective(m) > objective(best) + MIN_GAIN:
                cfg, best = trial, m
    return cfg, log, best


def _judged(m: dict) -> dict[str, list[tuple[bool, float]]]:
    """Per set, (answerable, cosine) of the items the names rule does not decide."""
    return {n: [(a, c) for a, c, names in s["rows"] if not names] for n, s in m.items()}


def at_threshold(m: dict, t: float) -> dict:
    """Per set: the share of the answerable and of the unanswerable items refused on cosine at `t`."""
    out = {}
    for n, rows in _judged(m).items():
        pos, neg = [c for a, c in rows if a], [c for a, c in rows if not a]
        out[n] = {
            "false_abstention": sum(c < t for c in pos) / max(1, len(pos)),
            "refused_unanswerable": sum(c < t for c in neg) / max(1, len(neg)),
        }
    return out


def fit_threshold(m: dict) -> dict:
    """The abstention threshold under the per-set false abstention bound (see the docstring)."""
    judged = _judged(m)
    neg = [c for rows in judged.values() for a, c in rows if not a]
    cands = sorted({c for rows in judged.values() for _, c in rows})
    best = None
    for lo, hi in zip(cands, cands[1:]):
        t = (lo + hi) / 2
        false = {n: sum(a and c < t for a, c in rows) / max(1, sum(a for a, _ in rows)) for n, rows in judged.items()}
        if max(false.values()) > MAX_FALSE_ABSTENTION:
            break  # false abstention only grows with the threshold
        refused = sum(c < t for c in neg) / max(1, len(neg))
        best = {"threshold": round(t, 4), "refused_unanswerable": refused, "false_abstention": false}
    names = {
        n: {
            "answerable_refused_on_names": sum(a and x == "unknown" for a, _, x in s["rows"]),
            "unanswerable_refused_on_names": sum(not a and x == "unknown" for a, _, x in s["rows"]),
            "answerable": sum(a for a, _, _ in s["rows"]),
            "unanswerable": sum(not a for a, _, _ in s["rows"]),
        }
        for n, s in m.items()
    }
    return {**(best or {"threshold": None}), "names_rule": names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "eval_all")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-ranking", action="store_true", help="only the threshold, at the current settings")
    args = ap.parse_args()
    sets = fit_sets(args.work)
    if not sets:
        sys.exit(f"no fit sets in {args.work}: run benchmarks/eval_all.py --no-answers --sets external,dev2 first")
    print("fit sets:", {n: len(items) for n, (items, _) in sets.items()})
    if args.no_ranking:
        cfg, log, m = RetrievalConfig(), [], measure(RetrievalConfig(), sets)
    else:
        cfg, log, m = fit_ranking(sets)
    changed = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != getattr(RetrievalConfig(), f.name)
    }
    th = fit_threshold(m)
    previous = RetrievalConfig().abstain_threshold
    before = at_threshold(m, previous)
    print("chosen ranking changes:", changed or "none")
    print(f"abstention at the previous threshold {previous}: {before}")
    print("abstention fitted:", th)
    if args.json is not None:
        atomic_write_json(
            args.json,
            {"fit_sets": {n: len(items) for n, (items, _) in sets.items()}, "ranking": log, "changed": changed,
             "abstention": th, "previous_threshold": previous, "at_previous_threshold": before},
        )  # fmt: skip


if __name__ == "__main__":
    main()
