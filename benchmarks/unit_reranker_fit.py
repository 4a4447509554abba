"""Fit the unit reranker (model/unit_reranker.py) on notes_qa's train notes and kit QA; report it on val.

    python benchmarks/unit_reranker_fit.py --out models/unit-reranker.safetensors
    python benchmarks/unit_reranker_fit.py --weights models/unit-reranker.safetensors --report test

Needs torch and transformers (`pip install -e '.[cpu]'`); the chat runs the fitted weights in numpy.

Training questions, each read as the chat reads it (`unit_scorer_fit.questions`: retrieved over an
index of the split's notes, the units' vectors and the packaged unit scorer's scores):
- notes_qa's train notes (never val/test), answerable questions whose answer line was read;
- `--kit N` QA items of the kit's generator data (`notes-rag sft-data`'s train.jsonl: SQuAD,
  PoQuAD and generated items, never eval): the gold passage and two of its distractors, in the
  order of their best unit's cosine (retrieval's order).
A unit is a target when it holds the gold answer's key facts (notes_qa_heldout.py `holds`). Each question shows the
model the scorer's top `--top-k` units (and any target outside them); loss: a softmax over those
against the targets spread evenly, as the scorer's fit. The encoder's embeddings and lower layers
stay frozen (`--freeze`), so the file ships only the top layers and the head.

The report: the share of answerable questions whose first unit (by the scorer alone; by the
scorer plus the reranker, computed by the product's code, `turn_input.unit_prior`) holds the
answer, with 95% Wilson intervals. `--report test` only after the weights were chosen on val.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from notes_qa_heldout import holds  # noqa: E402  (the benchmark's key-facts rule)
from unit_scorer_fit import questions, show  # noqa: E402

from notes_rag.chat.turn_input import PlainUnits, UnitView, relevance_query, unit_prior, unit_view  # noqa: E402
from notes_rag.eval.intervals import wilson  # noqa: E402
from notes_rag.index.bert_encoder import BertEncoder  # noqa: E402
from notes_rag.index.encoder import load_encoder  # noqa: E402
from notes_rag.index.encoder_cache import encoder_id, ensure_encoder  # noqa: E402
from notes_rag.index.encoder_delta import layer_names, write_delta  # noqa: E402
from notes_rag.model import unit_reranker  # noqa: E402
from notes_rag.model.unit_scorer import packaged, unit_features  # noqa: E402
from notes_rag.text import clean_markup, unit_texts  # noqa: E402


def notes_items(folder: Path, work: Path, split: str) -> list[dict]:
    """notes_qa's questions of `split`: query, units per passage, scorer scores, targets, and
    the view (for the report through the product's code)."""
    scorer, out = packaged(), []
    for d in questions(folder, work, split):
        scores = scorer.scores(d["features"], d["q"], d["vectors"]) if len(d["cos"]) else np.zeros(0)
        view = UnitView(d["units"], d["q"], d["vectors"], _split(d["cos"], d["units"]))
        out.append({**_item(d["query"], d["units"], scores, d["cover"].tolist()), "view": view,
                    "answerable": d["answerable"], "kind": d["kind"]})  # fmt: skip
    return out


def _split(flat: np.ndarray, units: list[list[str]]) -> list[list[float]]:
    bounds = np.cumsum([0] + [len(u) for u in units])
    return [flat[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]


def _item(query: str, units: list[list[str]], scores: np.ndarray, cover: list[bool]) -> dict:
    where = [(p, i) for p, us in enumerate(units) for i in range(len(us))]
    return {"query": query, "units": units, "where": where, "scores": np.asarray(scores, np.float64), "cover": cover}


def kit_items(path: Path, n: int, seed: int) -> list[dict]:
    """`n` QA items of the kit's generator data, read as above (units embedded once)."""
    rng = np.random.default_rng(seed)
    items = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            # boolq's and ropes' answers are not words of the passage: no unit holds them
            if (
                d["task"] == "qa"
                and d["source"] not in ("boolq", "ropes")
                and d.get("gold_answer")
                and d.get("gold_passage")
            ):
                items.append(d)
    pick = [items[i] for i in rng.choice(len(items), size=min(n, len(items)), replace=False)]
    units, scorer = PlainUnits(load_encoder()), packaged()
    prepared = []
    for d in pick:
        ps = [(p["label"], clean_markup(p["text"])) for p in d["passages"]]
        g = d["gold_passage"] - 1
        others = [p for i, p in enumerate(ps) if i != g]
        keep = [ps[g]] + [others[i] for i in rng.permutation(len(others))[:2]]
        users = [t["content"] for t in d["turns"] if t["role"] == "user"]
        prepared.append((relevance_query(users[-1], tuple(users[:-1][-1:])), keep, d["gold_answer"]))
    units.warm([u for _, keep, _ in prepared for _, t in keep for u in unit_texts(t)])
    out = []
    for query, keep, gold in prepared:
        best = [max(cs) if cs else -1.0 for cs in unit_view(units, query, keep).cosines]
        keep = [keep[i] for i in sorted(range(len(keep)), key=lambda i: -best[i])]  # retrieval's order
        view = unit_view(units, query, keep)
        flat = [u for us in view.units for u in us]
        cover = [holds(u, gold) for u in flat]
        if flat and any(cover):
            scores = scorer.scores(unit_features(query, view.units, view.cosines), view.q, view.vectors)
            out.append(_item(query, view.units, scores, cover))
    return out


def _candidates(item: dict, k: int, train: bool) -> list[int]:
    top = [int(i) for i in np.argsort(-item["scores"], kind="stable")[:k]]
    if train:  # a target outside the scorer's top k still teaches
        top += [i for i, c in enumerate(item["cover"]) if c and i not in top][:2]
    return top


def fit(items: list[dict], folder: Path, args) -> dict:
    """Fine-tune the encoder's top layers and a head; the state to ship (numpy, transformers' names)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tok = AutoTokenizer.from_pretrained(str(folder))
    enc = AutoModel.from_pretrained(str(folder), add_pooling_layer=False)
    head = torch.nn.Linear(enc.config.hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    for p in enc.embeddings.parameters():
        p.requires_grad = False
    for layer in enc.encoder.layer[: args.freeze]:
        for p in layer.parameters():
            p.requires_grad = False
    opt = torch.optim.AdamW(
        [{"params": [p for p in enc.parameters() if p.requires_grad], "lr": args.lr},
         {"params": head.parameters(), "lr": args.head_lr}], weight_decay=0.01,
    )  # fmt: skip
    steps = -(-len(items) // args.accum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / steps))

    def score(texts: list[str]):
        b = tok(texts, padding=True, truncation=True, max_length=160, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            h = enc(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        return head((h.float() * m).sum(1) / m.sum(1)).squeeze(-1)

    order = list(range(len(items)))
    rng.shuffle(order)
    t0, run = time.perf_counter(), 0.0
    enc.train()
    for n, k in enumerate(order):
        it = items[k]
        picks = _candidates(it, args.top_k, train=True)
        s = score(
            [unit_reranker.pair_text(it["query"], it["units"][it["where"][i][0]], it["where"][i][1]) for i in picks]
        )
        target = torch.tensor([float(it["cover"][i]) for i in picks])
        loss = -(torch.log_softmax(s, 0) * target / target.sum()).sum() / args.accum
        loss.backward()
        run += loss.item()
        if (n + 1) % args.accum == 0 or n + 1 == len(order):
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        if (n + 1) % 200 == 0:
            print(f"{n + 1}/{len(order)} questions, loss {run / 200 * args.accum:.3f}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
            run = 0.0
    state = enc.state_dict()
    keep = layer_names(range(args.freeze, enc.config.num_hidden_layers), state)
    out = {n: state[n].detach().float().numpy() for n in keep}
    out["head.weight"] = head.weight.detach()[0].numpy()
    out["head.bias"] = head.bias.detach().numpy()
    return out


def report(items: list[dict], reranker) -> dict:
    """First unit holds the answer: by the scorer, by the scorer plus the reranker (the product's
    `unit_prior`), and the reranker's candidates' ceiling."""
    ans = [it for it in items if it["answerable"] and it["where"]]
    out = {}
    for name, rows in (("all answerable", ans), ("heading_echo", [it for it in ans if it["kind"] == "heading_echo"])):
        hits = {"scorer": 0, "scorer + reranker": 0, f"top {unit_reranker.TOP_K} ceiling": 0}
        for it in rows:
            hits["scorer"] += it["cover"][int(np.argmax(it["scores"]))]
            prior = np.array([x for ps in unit_prior(it["view"], it["query"], reranker) for x in ps])
            hits["scorer + reranker"] += it["cover"][int(np.argmax(prior))]
            hits[f"top {unit_reranker.TOP_K} ceiling"] += any(
                it["cover"][i] for i in _candidates(it, unit_reranker.TOP_K, False)
            )
        out[name] = {
            k: {"k": int(v), "n": len(rows), "rate": v / max(1, len(rows)), "ci": list(wilson(int(v), len(rows)) or ())}
            for k, v in hits.items()
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notes-qa", type=Path, default=Path("../shared/data/notes_qa"))
    ap.add_argument("--sft", type=Path, default=Path("data/sft/train.jsonl"), help="the kit's generator data")
    ap.add_argument("--work", type=Path, default=Path("runs/unit_scorer"))
    ap.add_argument("--out", type=Path, help="write the fitted weights here")
    ap.add_argument("--weights", type=Path, help="report these weights instead of fitting")
    ap.add_argument("--report", default="val", choices=["val", "test"])
    ap.add_argument("--kit", type=int, default=4000, help="kit QA items to add (0: notes only)")
    ap.add_argument("--epochs", type=int, default=2, help="passes over the notes questions (the kit's: one)")
    ap.add_argument("--top-k", type=int, default=8, help="the scorer's top units shown a question (the shipped fit: 8)")
    ap.add_argument("--freeze", type=int, default=6, help="the encoder's lower layers kept as they are")
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--accum", type=int, default=4, help="questions per optimizer step")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="autocast (fast with AMX)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    folder = ensure_encoder()
    path = args.weights
    if path is None:
        import torch

        torch.set_num_threads(2)
        notes = [it for it in notes_items(args.notes_qa, args.work, "train") if it["answerable"] and any(it["cover"])]
        kit = kit_items(args.sft, args.kit, args.seed) if args.kit else []
        print(f"{len(notes)} notes questions x {args.epochs}, {len(kit)} kit questions", flush=True)
        state = fit(notes * args.epochs + kit, folder, args)
        path = args.out or args.work / "unit-reranker.safetensors"
        meta = {
            "fitted_on": f"notes_qa train notes x {args.epochs} ({len(notes)} questions) + {len(kit)} kit QA items "
            "(data/sft/train.jsonl), benchmarks/unit_reranker_fit.py",
            "training": {k: getattr(args, k) for k in ("top_k", "freeze", "lr", "head_lr", "accum", "bf16", "seed")},
            "minutes": round((time.perf_counter() - t0) / 60, 1),
            "date": time.strftime("%Y-%m-%d"),
        }
        write_delta(path, state, encoder_id(folder), meta)
    reranker = unit_reranker.load(BertEncoder(folder), path)
    res = report(notes_items(args.notes_qa, args.work, args.report), reranker)
    show(res, args.report, args.json, t0)


if __name__ == "__main__":
    main()
