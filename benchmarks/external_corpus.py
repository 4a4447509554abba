"""An external reading corpus for retrieval: held-out kit articles as notes, their questions as QA.

    python benchmarks/external_corpus.py --data data/sft/val.jsonl --out runs/external
    notes-rag index runs/external/notes --out runs/external/index
    python benchmarks/retrieval_dev.py --qa runs/external/qa.jsonl --index runs/external/index

The dev set is 43 questions over five files of one student's notes; tuning retrieval on it alone
would fit those notes. This corpus is what generalization is measured on: the passages of
`notes-rag sft-data`'s validation split (paragraphs held out of training: SQuAD 2.0 / XQuAD
Wikipedia, PoQuAD Polish Wikipedia, and generated questions over technical documentation,
including Polish questions about English passages), written as markdown notes, one file per
article with one section per passage. Each answerable question becomes a QA item whose evidence
is the sentence of its gold passage that holds the answer, so a hit means the right passage,
not any chunk that happens to contain a short answer like "1943". A conversation keeps all its
user turns (the last one is scored, as in dev). Unanswerable questions of the same split
(`UNANSWERABLE`: SQuAD 2.0's and PoQuAD's questions written to have no answer in their article,
generated ones about a topic the passages lack) join as `"answerable": false`, their articles
in the notes too, so abstention is measured on questions close to the notes; a few of the kit's
unanswerables are answerable questions whose paragraph was removed, so abstention accuracy here
is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notes_rag.text import sentence_spans  # noqa: E402

SOURCES = {"squad2": 90, "xquad": 30, "poquad": 120, "gen_en": 40, "gen_pl": 40, "gen_xling": 10}
UNANSWERABLE = {"squad2": 40, "poquad": 30, "gen_en": 10, "gen_pl": 10}


def _file_name(label: str) -> str:
    name = label.split(" › ")[0]
    return re.sub(r"[^\w.-]+", "_", name.replace("/", "__")).strip("_") or "article"


def _evidence(passage: str, answer: str) -> str | None:
    at = passage.find(answer)
    if at < 0:
        return None
    return next((passage[s:e] for s, e in sentence_spans(passage) if s <= at < e), None)


def _add_passages(files: dict[str, dict[str, str]], passages: list[dict]) -> None:
    """Each passage into its article's file, under its heading (a passage seen twice once)."""
    for p in passages:
        heading = p["label"].split(" › ")[-1]
        files.setdefault(_file_name(p["label"]), {}).setdefault(p["text"], heading)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/sft/val.jsonl"))
    ap.add_argument("--out", type=Path, default=Path("runs/external"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="questions per source, times this")
    ap.add_argument("--unanswerable", type=float, default=1.0, help="unanswerable questions per source, times this")
    args = ap.parse_args()

    records = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()]
    random.Random(args.seed).shuffle(records)
    wanted = {src: round(n * args.scale) for src, n in SOURCES.items()}
    unwanted = {src: round(n * args.unanswerable) for src, n in UNANSWERABLE.items()}
    files: dict[str, dict[str, str]] = {}  # file -> passage text -> heading
    items, unanswerable = [], []
    for rec in records:
        src = rec.get("source")
        if rec.get("task", "qa") != "qa" or not rec.get("passages"):
            continue
        turns = [t["content"] for t in rec["turns"] if t["role"] == "user"]
        asked = {"question": turns[0]} if len(turns) == 1 else {"turns": turns}
        if not rec.get("gold_passage"):
            if unwanted.get(src, 0) > 0 and len(turns) == 1:
                _add_passages(files, rec["passages"])
                unanswerable.append(
                    {"id": f"xu{len(unanswerable):03d}", "lang": rec["lang"], **asked, "answerable": False}
                )
                unwanted[src] -= 1
            continue
        if wanted.get(src, 0) <= 0:
            continue
        gold = rec["passages"][rec["gold_passage"] - 1]
        evidence = _evidence(gold["text"], rec.get("gold_answer") or "")
        if evidence is None or len(evidence.split()) < 4:
            continue
        _add_passages(files, rec["passages"])
        items.append(
            {
                "id": f"x{len(items):03d}",
                "lang": rec["lang"],
                **asked,
                "must": [[rec["gold_answer"]]],
                "evidence": evidence,
            }
        )
        wanted[src] -= 1
    items += unanswerable

    notes = args.out / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    for name, passages in files.items():
        body = "".join(f"## {heading}\n\n{text}\n\n" for text, heading in passages.items())
        (notes / f"{name}.md").write_text(f"# {name}\n\n{body}", encoding="utf-8")
    with open(args.out / "qa.jsonl", "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(
        f"{len(items)} questions ({len(unanswerable)} unanswerable) over {sum(len(p) for p in files.values())} passages"
        f" in {len(files)} files -> {args.out}"
    )


if __name__ == "__main__":
    main()
