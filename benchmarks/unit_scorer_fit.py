"""Fit the unit scorer (model/unit_scorer.py) on notes_qa's train notes; report it on val.

    python benchmarks/unit_scorer_fit.py --out notes_rag/model/unit-scorer.json
    python benchmarks/unit_scorer_fit.py --weights notes_rag/model/unit-scorer.json --report test

Each train-note question is retrieved and read as the chat does (sft/notes_qa.py `questions`,
chat/turn_input.py `unit_view` over the top passages: the product's encoder, the index's stored
unit vectors). A unit is a target when it holds the gold answer's key facts (notes_qa_heldout.py
`holds`, the benchmark's rule); questions with no such unit among those read, and unanswerable ones,
teach nothing here. Loss: softmax over the units read, cross-entropy against the targets spread
evenly. The report: the share of answerable questions whose top unit (by the scorer, and by
cosine alone) holds the answer, and that unit with the next one, with 95% Wilson intervals.
`--report test` only after the weights were chosen on val.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from notes_qa_heldout import holds  # the benchmark's key-facts rule

from notes_rag.chat.turn_input import read_passages, relevance_query, unit_view
from notes_rag.eval.intervals import wilson
from notes_rag.fileio import atomic_write_json
from notes_rag.index.build import update_index
from notes_rag.index.encoder import load_encoder
from notes_rag.index.search import Retriever
from notes_rag.model.unit_scorer import FEATURES, UnitScorer, unit_features
from notes_rag.sft import notes_qa


def questions(folder: Path, work: Path, split: str) -> list[dict]:
    """Per question of the split's notes: features, vectors, cosines, unit texts, the gold."""
    records = notes_qa.split_records(notes_qa.load_records(folder), split)
    notes_qa.write_notes(records, work / split / "notes")
    update_index(work / split / "notes", work / split / "index", load_encoder())
    retriever = Retriever(work / split / "index")
    out = []
    for nq in notes_qa.questions(records, retriever, move_gold=False):
        query = relevance_query(nq.qa["q"], nq.previous)
        view = unit_view(retriever, query, read_passages(nq.sources))
        flat = [u for us in view.units for u in us]
        gold = nq.qa.get("answer", "") if nq.qa.get("answerable") else ""
        cover = [holds(u, gold) for u in flat]
        # the unit and the one after it (across a passage end: a rare, harmless overcount)
        nxt = [holds(" ".join(flat[i : i + 2]), gold) for i in range(len(flat))]
        out.append(
            {
                "features": unit_features(query, view.units, view.cosines),
                "q": view.q,
                "vectors": view.vectors,
                "cos": np.array([c for cs in view.cosines for c in cs], dtype=np.float32),
                "cover": np.array(cover),
                "cover_next": np.array(nxt),
                "answerable": bool(nq.qa.get("answerable")),
                "kind": nq.qa.get("kind"),
                "query": query,
                "units": view.units,
                "note": nq.rec.get("id", ""),
            }
        )
    retriever.close()
    return out


class _Torch(torch.nn.Module):
    def __init__(self, n_features: int, dim: int, hidden: int):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(hidden, 1)
        )
        self.agree = torch.nn.Linear(dim, 1, bias=False)
        self.looks = torch.nn.Linear(dim, 1, bias=False)
        torch.nn.init.zeros_(self.agree.weight)
        torch.nn.init.zeros_(self.looks.weight)

    def forward(self, f, q, u):
        return self.mlp(f).squeeze(-1) + self.agree(u * q[None]).squeeze(-1) + self.looks(u).squeeze(-1)

    def export(self) -> UnitScorer:
        lin1, lin2 = self.mlp[0], self.mlp[2]
        return UnitScorer(
            lin1.weight.detach().T.numpy().copy(),
            lin1.bias.detach().numpy().copy(),
            lin2.weight.detach()[0].numpy().copy(),
            float(lin2.bias.detach()[0]),
            self.agree.weight.detach()[0].numpy().copy(),
            self.looks.weight.detach()[0].numpy().copy(),
        )


def fit(data: list[dict], epochs: int, lr: float, wd: float, hidden: int, seed: int) -> UnitScorer:
    torch.manual_seed(seed)
    usable = [d for d in data if d["answerable"] and d["cover"].any()]
    model = _Torch(len(FEATURES), usable[0]["vectors"].shape[1], hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for k in rng.permutation(len(usable)):
            d = usable[k]
            x = model(torch.from_numpy(d["features"]), torch.from_numpy(d["q"]), torch.from_numpy(d["vectors"]))
            target = torch.from_numpy(d["cover"].astype(np.float32))
            loss = -(torch.log_softmax(x, 0) * target / target.sum()).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.export()


def report(scorer: UnitScorer, data: list[dict]) -> dict:
    ans = [d for d in data if d["answerable"] and len(d["cos"])]
    out = {}
    for name, rows in (("all answerable", ans), ("heading_echo", [d for d in ans if d["kind"] == "heading_echo"])):
        top = [int(np.argmax(scorer.scores(d["features"], d["q"], d["vectors"]))) for d in rows]
        cos = [int(np.argmax(d["cos"])) for d in rows]
        res = {}
        for label, picks in (("scorer", top), ("cosine", cos)):
            for field in ("cover", "cover_next"):
                k = sum(bool(d[field][i]) for d, i in zip(rows, picks))
                ci = list(wilson(k, len(rows)) or ())
                res[f"{label} {field}"] = {"k": k, "n": len(rows), "rate": k / max(1, len(rows)), "ci": ci}
        out[name] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notes-qa", type=Path, default=Path("../shared/data/notes_qa"))
    ap.add_argument("--work", type=Path, default=Path("runs/unit_scorer"))
    ap.add_argument("--out", type=Path, help="write the fitted weights here")
    ap.add_argument("--weights", type=Path, help="report these weights instead of fitting")
    ap.add_argument("--report", default="val", choices=["val", "test"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=1e-2)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.weights:
        scorer = UnitScorer.load(args.weights)
    else:
        train = questions(args.notes_qa, args.work, "train")
        scorer = fit(train, args.epochs, args.lr, args.wd, args.hidden, args.seed)
        print("train:", json.dumps(report(scorer, train)["all answerable"]))
        if args.out:
            about = {
                "fitted_on": "notes_qa train notes (sft/notes_qa.py note_split), benchmarks/unit_scorer_fit.py",
                "epochs": args.epochs, "lr": args.lr, "wd": args.wd, "seed": args.seed,
                "date": time.strftime("%Y-%m-%d"),
            }  # fmt: skip
            atomic_write_json(args.out, scorer.to_json(**about))
    res = report(scorer, questions(args.notes_qa, args.work, args.report))
    show(res, args.report, args.json, t0)


def show(res: dict, split: str, json_path: Path | None, t0: float) -> None:
    """Print a `report`'s rates; write them with the run's seconds to `json_path` when given."""
    for name, r in res.items():
        print(f"{split} {name}:", {k: f"{v['rate']:.3f} ({v['k']}/{v['n']})" for k, v in r.items()})
    if json_path:
        took = time.perf_counter() - t0
        atomic_write_json(
            json_path, {"split": split, "report": res, "seconds": took, "date": time.strftime("%Y-%m-%d")}
        )


if __name__ == "__main__":
    main()
