"""Checkpoint 1 of the reader: the synthetic lookup task (notes_rag/eval/reader_synthetic.py).

    python benchmarks/reader_synthetic.py [--steps 200] [--json docs/benchmarks/reader_synthetic.json]

Trains a fresh small GPT with reader heads on lookup items of 8 and 32 sentences, with the
question-match flags and without them (ablation), and prints held-out sentence accuracy every
25 steps and the wall time. Target: ≥ 0.99 within 200 steps with the flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notes_rag.eval.reader_synthetic import train_lookup  # noqa: E402
from notes_rag.model.gpt import GPT, GPTConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cfg = GPTConfig(vocab_size=512, seq_len=512, n_layer=2, n_head=2, n_kv_head=2, n_embd=128, reader=True)
    results = []
    for n_sentences in (8, 32):
        for flags in (True, False):
            torch.manual_seed(0)
            model = GPT(cfg)
            t = time.perf_counter()
            curve = train_lookup(model, args.steps, n_sentences=n_sentences, flags=flags)
            row = {
                "sentences": n_sentences,
                "flags": flags,
                "curve": curve,
                "final": curve[-1][1],
                "first_step_0.99": next((s for s, a in curve if a >= 0.99), None),
                "seconds": round(time.perf_counter() - t, 1),
            }
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "model": cfg.to_dict(),
        "steps": args.steps,
        "batch": 16,
        "threads": torch.get_num_threads(),
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
