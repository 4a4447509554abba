"""Off-topic questions: how many does retrieval refuse before the model reads anything?

    python benchmarks/off_topic.py [--work runs/eval_all] [--sets dev,dev2,external] [--json FILE]

`eval_sets/off_topic/questions.jsonl` holds 60 questions no study note on ML or data answers (30
Polish, 30 English: cooking, geography, sport, history, home), written for this check; none comes
from a dev set. Each is searched, alone, in each set's index (built by benchmarks/eval_all.py in
`--work`), and refused or not by the chat's own rule (`question.retrieval_refuses`), with the
unknown-words gate (`RetrievalConfig.unknown_word_share`) and without it. Prints the share refused
by each reason with 95% Wilson intervals, and the mean time of a search with and without the
gate. The gate's other cost, false abstention on answerable questions, is in eval_all's
"baseline false abst." row (the same rule refuses for the baseline).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from notes_rag.eval.intervals import wilson  # noqa: E402
from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.index.config import RetrievalConfig  # noqa: E402
from notes_rag.index.search import Retriever  # noqa: E402
from notes_rag.question import retrieval_refuses  # noqa: E402

QUESTIONS = ROOT / "eval_sets" / "off_topic" / "questions.jsonl"


def refusals(index: Path, questions: list[str], cfg: RetrievalConfig, encoder=None) -> tuple[dict[str, int], object]:
    """Counts of questions refused, and by which reason; and the encoder (loaded once, reused)."""
    r = Retriever(index, encoder, cfg)
    try:
        counts = {"cosine": 0, "names": 0, "words": 0, "refused": 0}
        r.search(questions[0], k=3)  # the first search loads lazily held parts
        t0 = time.perf_counter()
        for q in questions:
            res = r.search(q, k=3)
            counts["cosine"] += r.abstain_threshold is not None and res.top_cosine < r.abstain_threshold
            counts["names"] += bool(res.unknown_names)
            counts["words"] += bool(res.unknown_words)
            counts["refused"] += not res.hits or retrieval_refuses(res, r.abstain_threshold)
        counts["search_ms"] = (time.perf_counter() - t0) / len(questions) * 1000  # the whole search, mean
        return counts, r.encoder
    finally:
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "eval_all", help="eval_all's work folder")
    ap.add_argument("--sets", default="dev,dev2,external")
    ap.add_argument("--index", type=Path, action="append", default=[], help="another index folder to check")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    indexes = {name: args.work / name / "index" for name in args.sets.split(",") if name}
    indexes |= {str(p): p for p in args.index}
    missing = [str(p) for p in indexes.values() if not (p / "CURRENT.json").is_file()]
    if missing:
        sys.exit(f"no index at {', '.join(missing)}: run benchmarks/eval_all.py first")
    encoder, rows = None, {}
    arms = {"with the words gate": RetrievalConfig(), "without": replace(RetrievalConfig(), unknown_word_share=None)}
    for name, index in indexes.items():
        for arm, cfg in arms.items():
            rows[(name, arm)], encoder = refusals(index, questions, cfg, encoder)
    table = Table(title=f"off-topic questions refused by retrieval ({len(questions)} questions)")
    for col in ("index", "gate", "refused", "by cosine", "by names", "by words", "ms a search"):
        table.add_column(col)
    out = []
    for (name, arm), c in rows.items():
        n = len(questions)
        lo, hi = wilson(c["refused"], n)
        shares = (f"{c[k] / n:.2f}" for k in ("cosine", "names", "words"))
        table.add_row(name, arm, f"{c['refused'] / n:.2f} [{lo:.2f}–{hi:.2f}]", *shares, f"{c['search_ms']:.1f}")
        out.append({"index": name, "gate": arm, "n": n, **c, "refused_share": c["refused"] / n, "ci95": [lo, hi]})
    Console().print(table)
    if args.json:
        machine = f"{platform.machine()} {platform.processor() or platform.platform()}, {os.cpu_count()} CPUs"
        date = dt.datetime.now().isoformat(timespec="seconds")
        meta = {"date": date, "machine": machine, "questions": QUESTIONS.name}
        atomic_write_json(args.json, {"meta": meta, "rows": out})


if __name__ == "__main__":
    main()
