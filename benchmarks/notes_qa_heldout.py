"""Issue 29, checkpoints 1-2: our GPT answering notes_qa's held-out notes, as the chat does.

    python benchmarks/notes_qa_heldout.py --model models/ --split test --json docs/benchmarks/notes_qa_test.json
    python benchmarks/notes_qa_heldout.py --model runs/gen/best --split val --fit   # fit the abstention bias

The split's notes (sft/notes_qa.py `note_split`: `test` is never trained on, `val` chooses the
checkpoint and fits the bias) are written as files and indexed with the product's encoder; each
question is asked through `Assistant` (retrieval with the previous question, the model reading
the top passages with relevance codes, constrained copy decode), in its note's conversation order
(a follow-up after the question it follows, with that exchange as history). In the same run, on
the same read passages, two extractive baselines: the encoder's most similar unit (line or
sentence) and that unit with the next one.

Scores, with 95% Wilson intervals: **key facts**: the answer holds at least KEY_SHARE of the
gold answer's words (folded, citations aside); by kind (heading_echo, follow_up); **precision**: the
mean share of a shown answer's words that the gold answer holds (recall's other side: a longer
answer is not free), and SQuAD's **word F1** over the answerable questions (a refusal scores 0),
both with normal 95% intervals; abstention on the unanswerable questions and false
abstention on the answerable ones; answers with markup.
With `--fit`, the no-answer scores (first-step log-odds, chat/writer.py) give the bias with the
most refusals at false abstention <= 0.05 on this split (run it on `val`, never on `test`).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from notes_rag.chat.assistant import AnswerConfig, Assistant
from notes_rag.chat.format import Turn
from notes_rag.chat.turn_input import read_passages, relevance_query, unit_cosines
from notes_rag.eval.intervals import wilson
from notes_rag.fileio import atomic_write_json
from notes_rag.index.build import update_index
from notes_rag.index.encoder import load_encoder
from notes_rag.index.search import Retriever
from notes_rag.model import reader, unit_reranker
from notes_rag.model.checkpoint import load_model
from notes_rag.sft import notes_qa
from notes_rag.text import unit_texts, words

KEY_SHARE = 0.6  # of the gold answer's words the answer must hold (as train-generator's validation)
_MARKUP = re.compile(r"!\[|\]\(|\*\*|</?[a-zA-Z]+>")


def holds(answer: str, gold: str) -> bool:
    g = [w for w in words(re.sub(r"\[\d+\]", " ", gold))]
    have = set(words(answer))
    return bool(g) and sum(w in have for w in g) >= KEY_SHARE * len(g)


def _bag(text: str) -> Counter:
    return Counter(words(re.sub(r"\[\d+\]", " ", text)))


def precision(answer: str, gold: str) -> float:
    """The share of the answer's words (citations aside) that the gold answer holds: what key
    facts (recall) does not see, so a longer answer is not free."""
    a, g = _bag(answer), _bag(gold)
    return sum((a & g).values()) / sum(a.values()) if a else 0.0


def word_f1(answer: str, gold: str) -> float:
    """SQuAD's word F1 of the answer against the gold answer (folded words, citations aside)."""
    a, g = _bag(answer), _bag(gold)
    common = sum((a & g).values())
    return 2 * common / (sum(a.values()) + sum(g.values())) if common else 0.0


def read_only_codes(codes: str) -> None:
    """Make every model input this process builds carry only the `codes` set of relevance codes
    (model/reader.py CODE_SETS): the benchmarks' side of `train-generator --codes`, an ablation."""
    if codes != "all":
        full, keep = reader.relevance_codes, reader.CODE_SETS[codes]
        reader.relevance_codes = lambda cosines: [[c & keep for c in cs] for cs in full(cosines)]


def rate(k: int, n: int) -> dict:
    lo_hi = wilson(k, n) or (None, None)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci": list(lo_hi)}


def mean_ci(xs: list[float]) -> dict:
    """Mean with a 95% normal interval (a mean of shares in [0, 1], not a rate)."""
    n = len(xs)
    if not n:
        return {"mean": None, "n": 0, "ci": [None, None]}
    m, se = float(np.mean(xs)), float(np.std(xs, ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return {"mean": m, "n": n, "ci": [max(0.0, m - 1.96 * se), min(1.0, m + 1.96 * se)]}


def fmt(r: dict) -> str:
    if "mean" in r:
        return "–" if r["mean"] is None else f"{r['mean']:.2f} [{r['ci'][0]:.2f}–{r['ci'][1]:.2f}] (n={r['n']})"
    if not r["n"]:
        return "–"
    lo, hi = r["ci"]
    return f"{r['rate']:.2f} [{lo:.2f}–{hi:.2f}] ({r['k']}/{r['n']})"


def baselines(retriever, question: str, previous: tuple[str, ...], sources) -> tuple[str, str]:
    """The encoder's most similar unit of the read passages, and it with the unit after it."""
    passages = read_passages(sources)
    cos = unit_cosines(retriever, relevance_query(question, previous), passages)
    best = max(((c, p, u) for p, cs in enumerate(cos) for u, c in enumerate(cs)), default=None)
    if best is None:
        return "", ""
    _, p, u = best
    units = unit_texts(passages[p][1])
    return units[u], " ".join(units[u : u + 2])


def run(args) -> dict:
    console = Console(stderr=True)
    records = notes_qa.split_records(notes_qa.load_records(args.notes_qa), args.split)
    work = args.work / args.split
    notes_qa.write_notes(records, work / "notes")
    encoder = load_encoder()
    update_index(work / "notes", work / "index", encoder)
    retriever = Retriever(work / "index")  # the chat's own query encoder
    model, tok, _ = load_model(args.model)
    cfg = AnswerConfig(abstain_bias=args.bias)
    if args.prior_weight is not None:
        cfg.unit_prior_weight = args.prior_weight
    assistant = Assistant(retriever, model, tok, cfg, str(args.model), str(work / "index"))
    read_only_codes(args.codes)
    rows = []
    t0 = time.perf_counter()
    for rec in records:
        answers: list[tuple[str, str]] = []  # (question, answer) of this note's conversation
        for qa in rec["qa"]:
            fu = qa.get("follow_up_of")
            prev = answers[fu] if fu is not None and fu < len(answers) else (answers[-1] if answers else None)
            history = [Turn("user", prev[0]), Turn("assistant", prev[1])] if prev else []
            ans = assistant.ask(history, qa["q"])
            answers.append((qa["q"], ans.text))
            top, top_next = baselines(retriever, qa["q"], tuple(h.content for h in history[:1]), ans.sources)
            rows.append(
                {
                    "note": rec["id"],
                    "q": qa["q"],
                    "kind": qa.get("kind"),
                    "lang": qa.get("lang"),
                    "note_lang": rec.get("lang", ""),
                    "answerable": bool(qa.get("answerable")),
                    "gold": qa.get("answer", ""),
                    "answer": ans.text,
                    "abstained": ans.abstained,
                    "abstain_reason": ans.abstain_reason,
                    "answered_by": ans.answered_by,
                    "no_answer": ans.no_answer,
                    "top_line": top,
                    "top_two_lines": top_next,
                    "total_s": ans.timings.total_s,
                }
            )
        console.print(f"{len(rows)} questions, {time.perf_counter() - t0:.0f} s", end="\r")
    retriever.close()
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def summarize(rows: list[dict]) -> dict:
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]

    def key(rs, field):
        return rate(sum(not r["abstained"] and holds(r[field], r["gold"]) for r in rs), len(rs))

    def base(rs, field):
        return rate(sum(holds(r[field], r["gold"]) for r in rs), len(rs))

    out = {}
    for name, rs in (
        ("all answerable", ans),
        ("heading_echo", [r for r in ans if r["kind"] == "heading_echo"]),
        ("follow_up", [r for r in ans if r["kind"] == "follow_up"]),
        ("other language", [r for r in ans if r["lang"] and r["lang"] != r["note_lang"].replace("mixed", "pl")]),
    ):
        out[name] = {
            "model": key(rs, "answer"),
            "top line": base(rs, "top_line"),
            "top 2 lines": base(rs, "top_two_lines"),
        }
    shown = [r for r in ans if not r["abstained"]]
    out["precision"] = {
        "model": mean_ci([precision(r["answer"], r["gold"]) for r in shown]),
        "top line": mean_ci([precision(r["top_line"], r["gold"]) for r in ans]),
        "top 2 lines": mean_ci([precision(r["top_two_lines"], r["gold"]) for r in ans]),
    }
    # over every answerable question (a refusal scores 0), so it compares with the baselines
    out["word F1"] = {
        "model": mean_ci([0.0 if r["abstained"] else word_f1(r["answer"], r["gold"]) for r in ans]),
        "top line": mean_ci([word_f1(r["top_line"], r["gold"]) for r in ans]),
        "top 2 lines": mean_ci([word_f1(r["top_two_lines"], r["gold"]) for r in ans]),
    }
    shown = [r for r in rows if not r["abstained"]]
    out["abstention"] = {
        "unanswerable refused": rate(sum(r["abstained"] for r in una), len(una)),
        "false abstention": rate(sum(r["abstained"] for r in ans), len(ans)),
        "by model": rate(sum(r["answered_by"] == "model" for r in shown), len(shown)),
        "with markup": rate(sum(bool(_MARKUP.search(r["answer"])) for r in rows), len(rows)),
    }
    return out


def fit_bias(rows: list[dict], max_false: float = 0.05) -> dict:
    """The bias with the most unanswerable questions refused while false abstention <= max_false
    (greedy abstains when no_answer + bias > 0); questions retrieval refused are left out."""
    scored = [r for r in rows if r["no_answer"] is not None]
    ans = np.array([r["no_answer"] for r in scored if r["answerable"]])
    una = np.array([r["no_answer"] for r in scored if not r["answerable"]])
    best = None
    for b in np.arange(-8, 8.01, 0.05):
        fa = float(np.mean(ans + b > 0)) if len(ans) else 0.0
        rec = float(np.mean(una + b > 0)) if len(una) else 0.0
        if fa <= max_false and (best is None or rec > best["recall"]):
            best = {"bias": round(float(b), 2), "recall": rec, "false_abstention": fa}
    return best or {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models"))
    ap.add_argument("--notes-qa", type=Path, default=Path("../shared/data/notes_qa"))
    ap.add_argument("--split", default="test", choices=["test", "val"])
    ap.add_argument("--work", type=Path, default=Path("runs/notes_qa_bench"))
    ap.add_argument("--bias", type=float, default=AnswerConfig().abstain_bias)
    ap.add_argument("--prior-weight", type=float, help="unit scorer prior weight (default: the chat's)")
    ap.add_argument("--codes", default="all", choices=list(reader.CODE_SETS), help="codes the model reads")
    ap.add_argument("--fit", action="store_true", help="fit the abstention bias on this split (val only)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.fit and args.split == "test":
        sys.exit("fit the bias on val, never on the benchmark")
    res = run(args)
    summary = summarize(res["rows"])
    table = Table(title=f"notes_qa {args.split}: {args.model} (bias {args.bias})")
    for col in ("questions", "model", "encoder top line", "top line + next"):
        table.add_column(col)
    for name, r in summary.items():
        if name in ("abstention", "precision", "word F1"):
            continue
        table.add_row(name, fmt(r["model"]), fmt(r["top line"]), fmt(r["top 2 lines"]))
    p = summary["precision"]
    table.add_row("precision", fmt(p["model"]), fmt(p["top line"]), fmt(p["top 2 lines"]))
    f = summary["word F1"]
    table.add_row("word F1", fmt(f["model"]), fmt(f["top line"]), fmt(f["top 2 lines"]))
    Console().print(table)
    for k, r in summary["abstention"].items():
        print(f"{k}: {fmt(r)}")
    out = {"split": args.split, "model": str(args.model), "bias": args.bias, "codes": args.codes}
    out["prior_weight"] = AnswerConfig().unit_prior_weight if args.prior_weight is None else args.prior_weight
    out["unit_reranker"] = str(unit_reranker.release_file())  # None: off ($NOTES_RAG_UNIT_RERANKER=none)
    out |= {"summary": summary, "seconds": res["seconds"], "date": time.strftime("%Y-%m-%d")}
    if args.fit:
        out["fitted_bias"] = fit_bias(res["rows"])
        print("fitted bias:", out["fitted_bias"])
    out["rows"] = res["rows"]
    if args.json:
        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
