"""Grounded-QA metrics of a finetuned model on the held-out SFT split, per language.

python benchmarks/sft_heldout.py --model runs/sft/best --val data/sft/val.jsonl --per-group 60 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from notes_rag.eval.sft_metrics import answer, score_item, select_items, summarize
from notes_rag.model.checkpoint import load_model
from notes_rag.train.finetune import read_conversations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--val", type=Path, default=Path("data/sft/val.jsonl"))
    ap.add_argument("--per-group", type=int, default=60, help="items per (language, answerable) group")
    ap.add_argument("--copy-boost", type=float, default=0.0, help="CopyBias logit bonus (0 = off)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok, config = load_model(args.model)
    items = [
        r
        for r in select_items(read_conversations(args.val), args.per_group)
        if len(r["turns"]) >= 2 and r["turns"][-1]["role"] == "assistant"
    ]
    t0 = time.time()
    scores, examples = [], []
    for r in items:
        a = answer(model, tok, r, copy_boost=args.copy_boost)
        scores.append(score_item(r, a))
        if len(examples) < 12:
            examples.append(
                {
                    "lang": r["lang"],
                    "question": r["turns"][-2]["content"],
                    "gold": r.get("gold_answer"),
                    "gold_passage": r.get("gold_passage"),
                    "answer": a,
                }
            )
    summary = summarize(scores)
    table = Table(title=f"held-out SFT QA ({len(items)} items, copy boost {args.copy_boost}, {time.time() - t0:.0f} s)")
    for col in ("group", "n ans", "n unans", "EM", "F1", "citation acc", "abstention acc", "false abst."):
        table.add_column(col, justify="right")
    for name, m in summary.items():
        table.add_row(
            name,
            str(m["answerable"]),
            str(m["unanswerable"]),
            f"{m['exact_match']:.3f}",
            f"{m['f1']:.3f}",
            f"{m['citation_accuracy']:.3f}",
            f"{m['abstention_accuracy']:.3f}",
            f"{m['false_abstention']:.3f}",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"model": str(args.model), "meta": config.get("meta", {}), "summary": summary, "examples": examples},
                indent=2,
                ensure_ascii=False,
            )
        )


if __name__ == "__main__":
    main()
