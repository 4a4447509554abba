"""A reranker that reads: our GPT's no-answer score of each top candidate, against the linear one.

    python benchmarks/rerank_reader.py [--model models/] [--depth 10] [--sets dev,dev2,external]
        [--json runs/crosslingual/rerank_reader.json]

For each answerable question the product's retrieval (first stage + linear reranker,
`index/rerank.py`) gives its top `--depth` candidates. The generator then reads each candidate
alone, as the chat gives it passages (`model/reader.py encode`, with the translation match
flags and the system prompt), and its no-answer score (`chat/writer.py no_answer_score`, one
prefill) says how much it would rather abstain: a low score reads as "this passage answers".
Orders compared, by hit@1 / hit@5 / MRR@10 of the evidence (`eval.matching.is_hit`):

- linear:    the product's order;
- reader:    the top `--depth` by the reader's score alone (the rest after them);
- combined:  linear score - w * reader score, with w fitted on the external corpus and dev2's
             fit half (mean MRR@10 over the two; never dev), reported on every set.

Also the reader's cost: milliseconds per question for its `--depth` prefills (2-core CPU).
The indexes are those of `benchmarks/eval_all.py` (`--work`, built when missing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_all import default_sets, ensure_external  # noqa: E402

from notes_rag.chat.answer import Source  # noqa: E402
from notes_rag.chat.format import SYSTEM_PROMPT  # noqa: E402
from notes_rag.chat.writer import no_answer_score  # noqa: E402
from notes_rag.eval.all_sets import build_index, unavailable  # noqa: E402
from notes_rag.eval.matching import RETRIEVAL_DEPTH, is_hit  # noqa: E402
from notes_rag.eval.qa_file import load_items  # noqa: E402
from notes_rag.eval.splits import halves  # noqa: E402
from notes_rag.fileio import atomic_write_json  # noqa: E402
from notes_rag.index.search import Retriever  # noqa: E402
from notes_rag.lang import detect_lang  # noqa: E402
from notes_rag.model.checkpoint import load_model  # noqa: E402
from notes_rag.model.reader import encode  # noqa: E402

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


def read_scores(r: Retriever, gpt, tok, item, depth: int) -> dict:
    """The linear order's top `--depth`: linear scores, reader scores, gold flags, reader ms."""
    res = r.search_conversation(item.turns, k=max(depth, RETRIEVAL_DEPTH))
    question, previous = item.turns[-1], tuple(item.turns[-2:-1])
    translations = tuple(r.translations(question))
    lang = detect_lang(question)
    t0 = time.perf_counter()
    reader = []
    for h in res.hits[:depth]:
        label = Source(h.rank, h.file, h.line_start, h.line_end, " › ".join(h.heading_path), h.score, h.text).label
        inp = encode(
            tok,
            question,
            [(label, h.text)],
            previous,
            translations,
            max_len=gpt.config.seq_len - 64,
            system=SYSTEM_PROMPT[lang],
        )
        reader.append(no_answer_score(gpt, tok, inp))
    ms = 1000 * (time.perf_counter() - t0)
    return {
        "linear": [h.score for h in res.hits],
        "reader": reader,
        "gold": [is_hit(item.evidence, h.text) for h in res.hits],
        "ms": ms,
    }


def order(q: dict, w: float | None) -> list[int]:
    """Positions of the linear list in the new order: w None = the reader alone over its depth."""
    n = len(q["reader"])
    if w is None:
        top = sorted(range(n), key=lambda i: (q["reader"][i], i))
    else:
        top = sorted(range(n), key=lambda i: (-(q["linear"][i] - w * q["reader"][i]), i))
    return top + list(range(n, len(q["linear"])))


def metrics(qs: list[dict], w: float | None) -> dict:
    ranks = []
    for q in qs:
        new = [q["gold"][i] for i in order(q, w)][:RETRIEVAL_DEPTH]
        ranks.append(new.index(True) + 1 if True in new else None)
    n = len(ranks) or 1
    return {
        "n": len(ranks),
        "hit@1": sum(x == 1 for x in ranks) / n,
        "hit@5": sum(x is not None and x <= 5 for x in ranks) / n,
        "mrr@10": sum(1 / x for x in ranks if x) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "eval_all")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "sft" / "val.jsonl")
    ap.add_argument("--model", type=Path, default=ROOT / "models")
    ap.add_argument("--sets", default="dev,dev2,external")
    ap.add_argument("--depth", type=int, default=10, help="candidates the reader reads")
    ap.add_argument("--limit", type=int, default=0, help="at most this many questions per set (by id), 0 = all")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    wanted = args.sets.split(",")
    if not {"external", "dev2"} & set(wanted):
        ap.error("--sets needs external or dev2: the combined weight is fitted on them")
    if "external" in wanted:
        ensure_external(args.work, args.data)
    gpt, tok, _ = load_model(args.model)
    from notes_rag.index.encoder import load_encoder

    encoder = load_encoder(None)
    per_set: dict[str, list[dict]] = {}
    for s in default_sets(args.work):
        if s.name not in wanted or unavailable(s):
            continue
        r = Retriever.open(build_index(s, args.work, encoder))
        items = sorted((i for i in load_items(s.qa) if i.answerable), key=lambda i: i.id)
        items = items[: args.limit] if args.limit else items
        fit_ids = {i.id for i in halves(load_items(s.qa))[0]} if s.split else set()
        qs = []
        for item in items:
            q = read_scores(r, gpt, tok, item, args.depth)
            q["fit"] = item.id in fit_ids
            qs.append(q)
        r.close()
        per_set[s.name] = qs
        if s.split:
            per_set[f"{s.name} fit half"] = [q for q in qs if q["fit"]]
            per_set[f"{s.name} test half"] = [q for q in qs if not q["fit"]]
    fit_sets = [per_set[n] for n in ("external", "dev2 fit half") if per_set.get(n)]
    if not fit_sets:
        raise SystemExit("the combined weight is fitted on external and dev2's fit half: run at least one of them")
    best_w = max(WEIGHTS, key=lambda w: (statistics.mean(metrics(qs, w)["mrr@10"] for qs in fit_sets), -w))
    out = {"depth": args.depth, "limit": args.limit, "fitted_w": best_w, "sets": {}, "questions": per_set}
    print(f"combined weight w = {best_w} (fitted on external + dev2 fit half, mean MRR@10)")
    print(f"{'set':<16}{'order':<10}{'n':>5}{'hit@1':>8}{'hit@5':>8}{'MRR':>8}{'reader ms p50':>15}")
    for name, qs in per_set.items():
        ms = statistics.median(q["ms"] for q in qs) if qs else float("nan")
        rows = {"linear": metrics(qs, 0.0), "reader": metrics(qs, None), "combined": metrics(qs, best_w)}
        out["sets"][name] = {**rows, "reader_ms_p50": ms}
        for label, m in rows.items():
            print(f"{name:<16}{label:<10}{m['n']:>5}{m['hit@1']:>8.3f}{m['hit@5']:>8.3f}{m['mrr@10']:>8.3f}{ms:>15.0f}")
    out["weights"] = {str(w): {n: metrics(qs, w)["mrr@10"] for n, qs in per_set.items()} for w in WEIGHTS}
    if args.json:
        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
