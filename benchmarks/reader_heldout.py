"""The reader on the held-out split of the kit, against sentence-selection baselines.

    python benchmarks/reader_heldout.py --model runs/reader/best --data data/sft/val.jsonl \
        --metrics runs/reader/metrics.jsonl --png docs/reader_curve.png --json docs/benchmarks/reader_heldout.json

`data/sft/val.jsonl` is `notes-rag sft-data`'s validation split: whole paragraphs/documents held
out from training, with the same passages (gold + lexical-search distractors) as training.
Reported, by language and source group:
- span F1 (SQuAD word F1 of the predicted span against the gold answer; 0 when abstaining or
  pointing at the wrong sentence) on the human span sets (SQuAD 2.0/XQuAD English, PoQuAD Polish);
- sentence accuracy and citation (passage) accuracy on answerable items, for the reader and for
  three baselines in the same run: always-abstain, word-overlap sentence selector (shared word
  stems with the question), dense sentence selector (multilingual-e5 cosine);
- abstention on a half-unanswerable mix (every unanswerable item + as many answerable ones):
  precision, recall and false-abstention rate at several no-answer thresholds;
- reader latency per question (encode + forward + span search), p50.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notes_rag.eval.sft_metrics import token_f1  # noqa: E402
from notes_rag.model.checkpoint import load_model  # noqa: E402
from notes_rag.model.reader import encode, read, shared_stems  # noqa: E402
from notes_rag.sft.reader_data import labels, questions_of_record  # noqa: E402
from notes_rag.text import stems  # noqa: E402

SPAN_SETS = {"squad2": "en", "xquad": "en", "xquad_dialog": "en", "poquad": "pl"}
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def collect(model, tok, records, limit, overlap_weight):
    rows = []
    for rec in records:
        for q in questions_of_record(rec):
            try:
                inp = encode(tok, q.question, q.passages, q.history, max_len=model.config.seq_len)
            except ValueError:
                continue
            lab = labels(inp, q)
            if lab is None:
                continue
            t = time.perf_counter()
            r = read(model, inp)
            ms = (time.perf_counter() - t) * 1000
            overlap = shared_stems(inp, [t for _, t in q.passages], " ".join([*q.history[-1:], q.question]))
            with_prior = read(model, inp, prior=[overlap_weight * n for n in overlap])
            rows.append({"q": q, "inp": inp, "lab": lab, "r": r, "rp": with_prior, "ms": ms})
            if len(rows) >= limit:
                return rows
    return rows


def unit_text(row, u):
    unit = row["inp"].units[u]
    return row["q"].passages[unit.passage - 1][1][unit.start : unit.end]


def overlap_pick(row) -> int:
    q = stems(row["q"].question)
    scores = [len(q & stems(unit_text(row, u))) for u in range(len(row["inp"].units))]
    return int(np.argmax(scores))


def dense_picks(rows) -> list[int]:
    from notes_rag.index.encoder import encode_passages, encode_queries, load_encoder

    enc = load_encoder()
    qv = encode_queries(enc, [r["q"].question for r in rows])
    picks = []
    for i, row in enumerate(rows):
        uv = encode_passages(enc, [unit_text(row, u) for u in range(len(row["inp"].units))])
        picks.append(int(np.argmax(uv @ qv[i])))
    return picks


def reader_pick(row, key="r") -> int | None:
    return None if row[key].unit is None else row["inp"].units.index(row[key].unit)


def score(rows, dense):
    out = {}
    answerable = [i for i, r in enumerate(rows) if r["lab"][0] >= 0]
    for name, pick in (
        ("reader", lambda i: reader_pick(rows[i])),
        ("reader + shared stems", lambda i: reader_pick(rows[i], "rp")),
        ("word overlap", lambda i: overlap_pick(rows[i])),
        ("dense e5", lambda i: dense[i]),
    ):
        sent = np.mean([pick(i) == rows[i]["lab"][0] for i in answerable])
        cite = np.mean(
            [pick(i) is not None and rows[i]["inp"].units[pick(i)].passage == rows[i]["q"].passage for i in answerable]
        )
        out[name] = {"sentence_acc": round(float(sent), 3), "citation_acc": round(float(cite), 3), "n": len(answerable)}
    out["always abstain"] = {"sentence_acc": 0.0, "citation_acc": 0.0, "n": len(answerable)}
    return out


def span_f1(rows, threshold):
    groups: dict[str, list[float]] = {}
    for row in rows:
        q, r = row["q"], row["rp"]
        if row["lab"][0] < 0 or q.source not in SPAN_SETS:
            continue
        f1 = 0.0
        if r.no_answer < threshold and r.span and r.unit.passage == q.passage:
            f1 = token_f1(q.passages[q.passage - 1][1][r.span[0] : r.span[1]], q.answer)
        groups.setdefault(SPAN_SETS[q.source], []).append(f1)
    return {g: {"f1": round(float(np.mean(v)), 3), "n": len(v)} for g, v in sorted(groups.items())}


def abstention(rows, seed=0):
    unans = [r for r in rows if r["lab"][0] == -1]
    ans = [r for r in rows if r["lab"][0] != -1]
    rng = np.random.default_rng(seed)
    mix_ans = [ans[i] for i in rng.permutation(len(ans))[: len(unans)]]
    out = {}
    for t in THRESHOLDS:
        tp = sum(r["r"].no_answer >= t for r in unans)
        fp = sum(r["r"].no_answer >= t for r in mix_ans)
        out[str(t)] = {
            "precision": round(tp / max(tp + fp, 1), 3),
            "recall": round(tp / max(len(unans), 1), 3),
            "false_abstention": round(fp / max(len(mix_ans), 1), 3),
        }
    out["always abstain"] = {"precision": 0.5, "recall": 1.0, "false_abstention": 1.0}
    return out, len(unans)


def curve_png(metrics: list[Path], png: Path) -> None:
    """Validation metrics against training minutes; later files continue earlier runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, list[tuple[float, float]]] = {}
    offset = 0.0
    for path in metrics:
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        times = {r["step"]: r["elapsed"] for r in recs if "elapsed" in r}
        for r in recs:
            for key in ("sentence_acc", "span_f1", "abstain_acc", "false_abstain"):
                if key in r:
                    points.setdefault(key, []).append(((offset + times.get(r["step"], 0)) / 60, r[key]))
        offset += max(times.values(), default=0.0)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, pts in points.items():
        ax.plot(*zip(*pts), "o-", label=key)
    ax.set_xlabel("minutes of training (2-core CPU)")
    ax.set_ylabel("held-out validation")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("reader learning curve")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("data/sft/val.jsonl"))
    ap.add_argument("--limit", type=int, default=1500)
    ap.add_argument("--threshold", type=float, default=0.7, help="no-answer probability that abstains")
    ap.add_argument("--overlap-weight", type=float, default=1.0, help="weight of shared stems in the sentence choice")
    ap.add_argument("--metrics", type=Path, nargs="+", help="metrics.jsonl of the run (and of the runs it continued)")
    ap.add_argument("--png", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model, tok, _ = load_model(args.model)
    if not model.config.reader:
        sys.exit(f"{args.model} has no reader heads")
    records = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    np.random.default_rng(0).shuffle(records)  # the file is grouped by source; --limit takes a fair sample
    rows = collect(model, tok, records, args.limit, args.overlap_weight)
    dense = dense_picks(rows)
    mix, n_unans = abstention(rows)
    report = {
        "model": str(args.model),
        "data": str(args.data),
        "items": len(rows),
        "unanswerable": n_unans,
        "span_f1": span_f1(rows, args.threshold),
        "selection": score(rows, dense),
        "abstention_mix": mix,
        "reader_ms_p50": round(float(np.median([r["ms"] for r in rows])), 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.metrics and args.png:
        curve_png(args.metrics, args.png)


if __name__ == "__main__":
    main()
