"""Fit the reranker's weights (`notes_rag/index/rerank-weights.json`) on kit questions.

    python benchmarks/external_corpus.py --data data/sft/train.jsonl --out runs/rerank-train --scale 2 --unanswerable 0
    notes-rag index runs/rerank-train/notes --out runs/rerank-train/index
    python benchmarks/rerank_fit.py --qa runs/rerank-train/qa.jsonl --index runs/rerank-train/index

The questions and articles come from the kit's training split (SQuAD 2.0, XQuAD, PoQuAD and
generated questions over technical documentation, Polish and English); the dev set and the
held-out external corpus are never seen. For each question the first stage's top candidates are
featurized (`rerank.features`); the loss is listwise: the softmax over the candidates' scores
should put its mass on the chunks that hold the evidence (`eval.matching.is_hit`). Questions
whose evidence is not among the candidates teach nothing and are left out. L2-regularized,
full-batch gradient descent (a few hundred questions, nine features: seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notes_rag.eval.matching import is_hit  # noqa: E402
from notes_rag.eval.qa_file import load_items  # noqa: E402
from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.index import rerank, store  # noqa: E402
from notes_rag.index.config import RetrievalConfig  # noqa: E402
from notes_rag.index.search import Retriever  # noqa: E402


def collect(r: Retriever, items) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, gold mask) per answerable question with a gold chunk among the candidates."""
    out = []
    for item in items:
        if not item.answerable:
            continue
        signals, _ = r.first_stage(item.turns, r.cfg.rerank_depth, "hybrid")
        ids, x = r.rerank_features(signals)
        rows = store.fetch_chunks(r.conn, ids)
        gold = np.array([is_hit(item.evidence, rows[c].text) for c in ids], dtype=float)
        if gold.any():
            out.append((x, gold))
    return out


def identity() -> np.ndarray:
    """The weights that keep the first stage's order."""
    w = np.zeros(len(rerank.FEATURES))
    w[rerank.FEATURES.index("fused")] = 1.0
    return w


def loss_and_grad(w: np.ndarray, data, l2: float) -> tuple[float, np.ndarray]:
    """Listwise loss, regularized toward `identity()`: without evidence the reranker keeps the
    first stage's order rather than drifting to zero weights."""
    total, grad = 0.0, np.zeros_like(w)
    for x, gold in data:
        s = x @ w
        p = np.exp(s - s.max())
        p /= p.sum()
        pg = (p * gold).sum()
        total -= np.log(pg)
        # d(-log sum_gold p)/dw = E_p[x] - E_{p|gold}[x]
        grad += p @ x - (p * gold) @ x / pg
    n, d = len(data), w - identity()
    return total / n + l2 * (d @ d), grad / n + 2 * l2 * d


def fit(data, l2: float, steps: int = 3000, lr: float = 0.1) -> np.ndarray:
    w = identity()
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):  # Adam
        _, g = loss_and_grad(w, data, l2)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return w


def top1(w: np.ndarray, data) -> float:
    return float(np.mean([gold[np.argmax(x @ w)] for x, gold in data]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=Path("runs/rerank-train/qa.jsonl"))
    ap.add_argument("--index", type=Path, default=Path("runs/rerank-train/index"))
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--out", type=Path, default=rerank.PACKAGED)
    args = ap.parse_args()

    r = Retriever.open(args.index, cfg=dataclasses.replace(RetrievalConfig(), rerank=False))
    data = collect(r, load_items(args.qa))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    cut = len(data) // 5
    held, train = [data[i] for i in order[:cut]], [data[i] for i in order[cut:]]
    base = identity()
    w = fit(train, args.l2)
    print(
        f"{len(data)} questions with a gold candidate; held-out fifth: top-1 first stage {top1(base, held):.3f}"
        f" -> reranked {top1(w, held):.3f} (train {top1(base, train):.3f} -> {top1(w, train):.3f})"
    )
    w = fit(data, args.l2)
    for name, x in zip(rerank.FEATURES, w):
        print(f"  {name:<11}{x:+.3f}")
    atomic_write_json(
        args.out,
        {
            "features": list(rerank.FEATURES),
            "weights": [round(float(x), 4) for x in w],
            "fitted_on": f"{len(data)} kit training questions ({args.qa}), listwise softmax, l2={args.l2}",
        },
    )
    print(f"weights -> {args.out}")


if __name__ == "__main__":
    main()
