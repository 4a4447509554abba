"""Carry the quiz grader's encoder thresholds over to another encoder, away from the quiz sets.

    python benchmarks/grade_calibrate.py [--data data/sft/val.jsonl] [--pairs 3000]

`GradeConfig.sim_with_term` and `sim_alone` were set for the plain multilingual-e5-small. The
aligned encoder (models/encoder-delta.safetensors) puts every pair of texts closer, so at the
same thresholds it accepts more wrong answers. This script keeps each threshold's false-accept
rate: on pairs of *different* gold answers of the kit's held-out split (same source and language,
so of one style: a wrong answer as a student types it), it finds the share of pairs the plain
encoder scores at or above each threshold, and the aligned encoder's cosine with that same share
above it. The quiz's hand-written answers (eval_sets/quiz/answers.jsonl) are not read.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from notes_rag.index import encoder_cache as C  # noqa: E402
from notes_rag.index.bert_encoder import BertEncoder  # noqa: E402
from notes_rag.index.encoder import encode_passages, encode_queries  # noqa: E402

# GradeConfig's thresholds as they were set for the plain encoder, before this carried them over
PLAIN = {"sim_with_term": 0.86, "sim_alone": 0.93}


def answer_pairs(path: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(typed, expected): two different gold answers of one source and language."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        answer = (r.get("gold_answer") or "").strip()
        if 1 <= len(answer.split()) <= 12:  # a typed answer's length
            groups[(r["source"], r["lang"])].append(answer)
    rng, out = random.Random(seed), []
    keys = sorted(k for k, v in groups.items() if len(set(v)) >= 2)
    while len(out) < n:
        a, b = rng.sample(sorted(set(groups[rng.choice(keys)])), 2)
        out.append((a, b))
    return out


def cosines(encoder, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Retriever.similarity's cosine: the typed answer as a query, the expected one as a passage."""
    q = encode_queries(encoder, [a for a, _ in pairs])
    p = encode_passages(encoder, [b for _, b in pairs])
    return (q * p).sum(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "sft" / "val.jsonl")
    ap.add_argument("--pairs", type=int, default=3000)
    args = ap.parse_args()
    pairs = answer_pairs(args.data, args.pairs)
    plain = cosines(BertEncoder(C.ensure_default_model()), pairs)
    aligned = cosines(BertEncoder(C.ensure_encoder()), pairs)
    print(
        f"{len(pairs)} pairs of different answers; cosine p50 plain {np.median(plain):.3f}, "
        f"aligned {np.median(aligned):.3f}"
    )
    for name, t in PLAIN.items():
        share = float((plain >= t).mean())
        carried = float(np.quantile(aligned, 1 - share)) if share > 0 else float(aligned.max())
        print(f"{name}: {t:.3f} plain accepts {share:.4f} of the pairs; aligned at that share: {carried:.3f}")


if __name__ == "__main__":
    main()
