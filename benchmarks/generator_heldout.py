"""Checkpoint 2 of the generator (issue 22): the held-out kit split rendered as notes.

    python benchmarks/generator_heldout.py --model models/ --data data/sft --n 400 \
        --json docs/benchmarks/generator_heldout.json

The items are `notes-rag sft-data`'s validation split (kit paragraphs never trained on, no
passage shared with training), rendered as notes and read as the chat reads them
(chat/turn_input.py: markup cleaned, each unit's relevance codes from the index's encoder, as
train-generator's kit items): the gold passage plus 2 distractors found by
BM25 in the same source, about a quarter unanswerable (the gold passage removed). `--codes`
reads only some of the codes (the ablation of issue 29, checkpoint 1; model/reader.py
CODE_SETS). Each question is answered in one run by

- the model: the chat's constrained copy decode (chat/writer.py), and
- the quote by meaning (chat/quote.py) over the same passages (all of them: their order here is
  random, not retrieval's), with the retrieval encoder,

and scored per language: the answer holds the gold answer (folded substring, as eval's key
facts), at most 60 words; abstention precision / false abstention on the mix. Yes/no
questions are left out (their gold is the word "yes"/"no", not a fact to copy).

It also fits the chat's `AnswerConfig.abstain_bias` from the model's no-answer scores (first-step
log-odds of the abstention start, chat/writer.py): the bias that abstains on as many
unanswerable questions as possible while false abstention stays ≤ 5% on the answerable ones
(greedy abstains when score + bias > 0). Printed and written to the JSON; the run itself uses the
bias the chat has now (`--bias`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from notes_qa_heldout import read_only_codes  # the same --codes ablation
from rich.console import Console
from rich.table import Table

from notes_rag.chat.assistant import AnswerConfig
from notes_rag.chat.format import ABSTAIN, SYSTEM_PROMPT
from notes_rag.chat.quote import QuoteConfig, cited_quote
from notes_rag.chat.writer import write
from notes_rag.eval.intervals import wilson
from notes_rag.fileio import atomic_write_json
from notes_rag.model import reader, unit_reranker
from notes_rag.model.checkpoint import load_model
from notes_rag.model.engine import SamplingConfig
from notes_rag.sft.generator_data import note_passages, questions_of_record
from notes_rag.text import clean_markup, fold, n_words


def _items(path: Path, n: int, seed: int) -> list[dict]:
    """Questions of the validation conversations, note-rendered as in training (seeded)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        qs = questions_of_record(rec)
        if not qs:
            continue
        passages, _ = note_passages(rec, qs, seed)
        q = qs[-1]  # the last question (its history is the one before)
        if q.answer.lower() in ("yes", "no"):
            continue
        out.append(
            {
                "question": q.question,
                "history": q.history,
                "passages": passages,
                "answerable": q.passage is not None,
                "gold": q.answer,
                "lang": rec.get("lang", "en"),
                "source": rec.get("source", ""),
            }
        )
    random.Random(seed).shuffle(out)
    return out[:n]


def _holds(answer: str, gold: str) -> bool:
    return bool(gold.strip()) and fold(gold) in fold(answer)


def fit_bias(answerable: list[dict], unanswerable: list[dict], max_false: float = 0.05) -> dict:
    """The bias b abstaining on the most unanswerable items (score + b > 0) while at most
    `max_false` of the answerable ones do, and what it gives on these items."""
    ans = sorted(r["no_answer"] for r in answerable)
    una = [r["no_answer"] for r in unanswerable]
    allowed = int(max_false * len(ans))  # answerable items that may abstain
    b = -ans[len(ans) - 1 - allowed] if ans else 0.0  # just below the (allowed+1)-th highest score
    tp, fp = sum(x + b > 0 for x in una), sum(x + b > 0 for x in ans)
    return {
        "bias": round(b, 3),
        "false_abstention": fp / max(len(ans), 1),
        "abstention_recall": tp / max(len(una), 1),
        "abstention_precision": tp / max(tp + fp, 1),
    }


def _reranker():
    """The chat's unit reranker over the default encoder, run by the numpy encoder as in the chat."""
    from notes_rag.index.bert_encoder import BertEncoder
    from notes_rag.index.encoder_cache import encoder_id, ensure_encoder

    folder = ensure_encoder()
    return unit_reranker.for_encoder(BertEncoder(folder), encoder_id(folder))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models"))
    ap.add_argument("--data", type=Path, default=Path("data/sft"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--bias", type=float, default=AnswerConfig().abstain_bias, help="abstain bias for this run")
    ap.add_argument("--prior-weight", type=float, help="unit scorer prior weight (default: the chat's)")
    ap.add_argument("--codes", default="all", choices=list(reader.CODE_SETS), help="codes the model reads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from notes_rag.chat.turn_input import PlainUnits, relevance_query, turn_input, unit_prior, unit_view
    from notes_rag.index.encoder import load_encoder

    model, tok, _ = load_model(args.model)
    model.eval()
    units = PlainUnits(load_encoder())  # the encoder train-generator's kit items read with
    reranker = _reranker()
    read_only_codes(args.codes)

    cfg = AnswerConfig()
    if args.prior_weight is not None:
        cfg.unit_prior_weight = args.prior_weight
    items = _items(args.data / "val.jsonl", args.n, args.seed)
    rows, t0 = [], time.time()
    for it in items:
        lang = it["lang"] if it["lang"] in ABSTAIN else "en"
        passages = [(label, clean_markup(text)) for label, text in it["passages"]]
        query = relevance_query(it["question"], it["history"])
        view = unit_view(units, query, passages)  # as the chat's turn (chat/assistant.py): codes and prior
        inp = turn_input(tok, units, it["question"], it["history"], passages, SYSTEM_PROMPT[lang],
                         model.config.seq_len - cfg.max_new_tokens, view)  # fmt: skip
        texts = [t for _, t in passages]
        prior = unit_prior(view, query, reranker) if cfg.whole_units and cfg.unit_prior_weight else None
        pieces = write(model, tok, inp, passages, [it["question"], *it["history"]],
                       SamplingConfig(max_new_tokens=cfg.max_new_tokens), cfg.max_words, time.perf_counter(),
                       abstain_bias=args.bias, whole_units=cfg.whole_units, unit_prior=prior,
                       prior_weight=cfg.unit_prior_weight)  # fmt: skip
        while True:
            try:
                next(pieces)
            except StopIteration as done:
                w = done.value
                break
        # the quote reads every passage: here they come in random order, not retrieval's
        query = " ".join([*it["history"][-1:], it["question"]])
        quote = cited_quote(query, texts, units.similarity, QuoteConfig(passages=len(texts))) or ABSTAIN[lang]
        rows.append({**it, "model": w.text, "quote": quote, "model_abstained": w.abstained, "no_answer": w.no_answer})
    console = Console()
    table = Table(title=f"held-out kit as notes: {len(rows)} questions, {time.time() - t0:.0f} s")
    for col in ("lang", "n", "model holds gold", "quote holds gold", "model ≤60 words"):
        table.add_column(col, justify="right")
    report: dict = {
        "n": len(rows),
        "model": str(args.model),
        "codes": args.codes,
        "unit_prior_weight": cfg.unit_prior_weight,
        "unit_reranker": str(unit_reranker.release_file()) if reranker is not None else None,
        "date": time.strftime("%Y-%m-%d"),
        "by_lang": {},
    }
    for lang in ("en", "pl"):
        ans = [r for r in rows if r["answerable"] and r["lang"] == lang]
        m = sum(_holds(r["model"], r["gold"]) and not r["model_abstained"] for r in ans)
        q = sum(_holds(r["quote"], r["gold"]) for r in ans)
        short = sum(n_words(r["model"]) <= 60 for r in ans)
        report["by_lang"][lang] = {
            "n": len(ans),
            "model_holds_gold": [m / max(len(ans), 1), *(wilson(m, len(ans)) or ())],
            "quote_holds_gold": [q / max(len(ans), 1), *(wilson(q, len(ans)) or ())],
            "model_at_most_60_words": short / max(len(ans), 1),
        }
        table.add_row(lang, str(len(ans)), f"{m / max(len(ans), 1):.2f}", f"{q / max(len(ans), 1):.2f}",
                      f"{short / max(len(ans), 1):.2f}")  # fmt: skip
    unans = [r for r in rows if not r["answerable"]]
    ans = [r for r in rows if r["answerable"]]
    tp = sum(r["model_abstained"] for r in unans)
    fp = sum(r["model_abstained"] for r in ans)
    report["abstention"] = {
        "unanswerable": len(unans),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(len(unans), 1),
        "false_abstention": fp / max(len(ans), 1),
    }
    report["abstain_bias_fit"] = fit_bias(ans, unans)
    console.print(table)
    console.print(f"abstain bias fitted (false abstention ≤ 0.05): {report['abstain_bias_fit']}")
    console.print(
        f"abstention on the mix ({len(unans)} unanswerable of {len(rows)}): precision "
        f"{report['abstention']['precision']:.2f}, recall {report['abstention']['recall']:.2f}, "
        f"false abstention {report['abstention']['false_abstention']:.2f}"
    )
    report["examples"] = [
        {k: r[k] for k in ("question", "gold", "model", "quote", "lang", "answerable")} for r in rows[:25]
    ]
    if args.json:
        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
