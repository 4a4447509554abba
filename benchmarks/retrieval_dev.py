"""Retrieval quality on a QA file: hit@1, hit@5, MRR by group, per mode; abstention cosine.

    python benchmarks/retrieval_dev.py --qa ../shared/eval/dev.jsonl [--index corpus/.notes-rag]
        [--set bilingual=false --set translated_weight=0.5]   # RetrievalConfig overrides

Groups: pl / en (question language, same language as the evidence's note), cross-lingual
(question language differs from the language of the note holding the evidence), multi-turn
(items with "turns"; all turns are given to `search_conversation`), and all. Unanswerable items
are left out of the hit rates; their dense top-1 cosine is compared with the answerable ones' to
pick the abstention threshold. The hit rule is `notes_rag.eval.matching.is_hit` (the one `notes-rag
eval` uses): a chunk holds the evidence, or ≥60% of it when it straddles a chunk boundary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notes_rag.eval.matching import RETRIEVAL_DEPTH, evidence_files, first_hit_rank  # noqa: E402
from notes_rag.eval.qa_file import load_items  # noqa: E402
from notes_rag.eval.runner import question_kind  # noqa: E402
from notes_rag.index.search import MODES, RetrievalConfig, Retriever  # noqa: E402


def _config(overrides: list[str]) -> RetrievalConfig:
    """RetrievalConfig with `field=value` overrides, each value parsed as its field's type."""
    defaults = RetrievalConfig()
    changes = {}
    for item in overrides:
        name, _, value = item.partition("=")
        kind = type(getattr(defaults, name))
        changes[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return dataclasses.replace(defaults, **changes)


def _groups(item, files, file_lang) -> list[str]:
    kind = question_kind(item, files, file_lang)
    groups = ["all", "cross-lingual" if kind == "cross-lingual" else item.lang]
    if item.multi_turn:
        groups.append("multi-turn")
    return groups


MAX_FALSE_ABSTENTION = 0.05  # the product's bound (issue #15): refusing answerable questions costs trust too


def _threshold(pos: list[float], neg: list[float]) -> tuple[float, float]:
    """The threshold that refuses the most unanswerable questions (cosine under it) while
    refusing at most MAX_FALSE_ABSTENTION of the answerable ones, at the middle of the gap
    between neighbouring cosines; and its balanced accuracy. Balanced accuracy alone, with a
    handful of unanswerable items, buys one refusal with several false ones."""
    cands = sorted(set(pos + neg))
    best = None
    for lo, hi in zip(cands, cands[1:]):
        t = (lo + hi) / 2
        false = sum(p < t for p in pos) / len(pos)
        if false > MAX_FALSE_ABSTENTION:
            continue
        refused = sum(n < t for n in neg) / len(neg)
        key = (refused, -false, hi - lo)
        if best is None or key > best[0]:
            best = (key, t, (1 - false + refused) / 2)
    return best[1], best[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=Path("../shared/eval/dev.jsonl"))
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--misses", action="store_true", help="list items not hit at rank 1")
    ap.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a RetrievalConfig field, e.g. --set bilingual=false",
    )
    args = ap.parse_args()

    items = load_items(args.qa)
    r = Retriever.open(args.index, cfg=_config(args.set))
    chunks, file_lang = r.chunks(), r.file_langs()
    out: dict = {}
    for mode in args.modes.split(","):
        stats: dict[str, list[int | None]] = {}
        pos, neg = [], []
        misses = []
        latency: list[float] = []
        for item in items:
            t0 = time.perf_counter()
            res = r.search_conversation(item.turns, k=RETRIEVAL_DEPTH, mode=mode)
            latency.append(time.perf_counter() - t0)
            if not item.answerable:
                if not res.unknown_names:  # those abstain on their names, whatever the cosine
                    neg.append(res.top_cosine)
                continue
            pos.append(res.top_cosine)
            rank = first_hit_rank(item.evidence, [h.text for h in res.hits])
            files = evidence_files(item.evidence, chunks)
            for g in _groups(item, files, file_lang):
                stats.setdefault(g, []).append(rank)
            if rank != 1:
                misses.append((item.id, rank, item.turns[-1], [h.citation for h in res.hits[:3]]))
        print(f"\nmode={mode}")
        print(f"{'group':<14}{'n':>4}{'hit@1':>8}{'hit@5':>8}{'MRR':>8}")
        out[mode] = {}
        for g in ("pl", "en", "cross-lingual", "multi-turn", "all"):
            ranks = stats.get(g, [])
            if not ranks:
                continue
            h1 = sum(x == 1 for x in ranks) / len(ranks)
            h5 = sum(x is not None and x <= 5 for x in ranks) / len(ranks)
            mrr = sum(1 / x for x in ranks if x) / len(ranks)
            out[mode][g] = {"n": len(ranks), "hit@1": h1, "hit@5": h5, "mrr": mrr}
            print(f"{g:<14}{len(ranks):>4}{h1:>8.3f}{h5:>8.3f}{mrr:>8.3f}")
        print(f"query latency p50 {1000 * statistics.median(latency):.1f} ms over {len(latency)} questions")
        out[mode]["latency_p50_ms"] = 1000 * statistics.median(latency)
        if args.misses:
            for m in misses:
                print("  miss", *m)
        if mode != "bm25" and pos and neg:
            t, acc = _threshold(pos, neg)
            q = statistics.quantiles(pos, n=20)
            print(
                f"dense top-1 cosine: answerable min {min(pos):.3f} p5 {q[0]:.3f} median {statistics.median(pos):.3f}"
                f" | unanswerable max {max(neg):.3f} median {statistics.median(neg):.3f}"
                f" -> threshold {t:.3f} (false abstention <= {MAX_FALSE_ABSTENTION}; balanced accuracy {acc:.2f})"
            )
            out[mode]["abstention"] = {"answerable": sorted(pos), "unanswerable": sorted(neg), "threshold": t}
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
