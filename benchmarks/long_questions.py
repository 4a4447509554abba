"""Which part of a pasted paragraph should the model read? (issue 30, row 2)

    python benchmarks/long_questions.py --qa ../shared/eval/dev.jsonl --index corpus/.notes-rag [--model models/]

Each question of the QA file is pasted the way students paste: (1) a paragraph of notes, then
the question; (2) the question, then the paragraph; (3) the question between two paragraphs.
The paragraph is 3,000-5,000 characters of other passages of the index (the notes' own text,
question marks included). Three ways to fit it into the model's question budget
(chat/question_text.py) are compared:

    head    the first tokens
    tail    the last tokens
    asking  the sentences ending in "?", the last first, then the sentences before them

Reported per layout and way: the share of pastes whose kept part holds the whole question, and
the share whose answer (the release's default turn: the model reads, the quote answers) is the
one the question typed alone gets. Retrieval reads the whole paste in every case.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notes_rag.chat import assistant as assistant_mod  # noqa: E402
from notes_rag.chat.assistant import AnswerConfig, Assistant  # noqa: E402
from notes_rag.chat.question_text import QUESTION_TOKENS, fit_question  # noqa: E402


def head(tok, text: str, budget: int) -> str:
    return tok.decode(tok.encode(text)[:budget])


def tail(tok, text: str, budget: int) -> str:
    return tok.decode(tok.encode(text)[-budget:])


WAYS = {"head": head, "tail": tail, "asking": fit_question}


def pastes(question: str, texts: list[str], rng: random.Random) -> dict[str, str]:
    def paragraph() -> str:
        out = ""
        while len(out) < rng.randint(3000, 5000):
            out += " " + rng.choice(texts).replace("\n", " ")
        return out.strip()

    return {
        "notes, then question": f"{paragraph()} {question}",
        "question, then notes": f"{question} {paragraph()}",
        "question in between": f"{paragraph()} {question} {paragraph()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qa", type=Path, required=True)
    ap.add_argument("--index", type=Path, default=Path("corpus/.notes-rag"))
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(0)
    qa = [json.loads(line) for line in args.qa.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [d["question"] for d in qa if d.get("question")][: args.n]
    asst = Assistant.open(args.index, args.model, AnswerConfig())
    tok = asst.tok
    import sqlite3

    from notes_rag.index.store import current_generation

    conn = sqlite3.connect(current_generation(args.index) / "chunks.sqlite")
    texts = [r[0] for r in conn.execute("SELECT text FROM chunks")]
    alone = {q: asst.ask([], q).text for q in questions}
    kept = {}
    same = {}
    real_fit = assistant_mod.fit_question
    for way, fit in WAYS.items():
        assistant_mod.fit_question = lambda tok_, q, budget, fit=fit: fit(tok_, q, min(budget, QUESTION_TOKENS))
        rng = random.Random(0)  # the same pastes for every way
        for q in questions:
            for layout, paste in pastes(q, texts, rng).items():
                short = fit(tok, paste, QUESTION_TOKENS)
                key = (layout, way)
                kept.setdefault(key, []).append(" ".join(q.split()) in " ".join(short.split()))
                same.setdefault(key, []).append(asst.ask([], paste).text == alone[q])
    assistant_mod.fit_question = real_fit
    rows = []
    print(f"{len(questions)} questions of {args.qa.name}; budget {QUESTION_TOKENS} tokens")
    print(f"{'layout':<24} {'way':<8} {'question kept':>14} {'same answer':>12}")
    for (layout, way), k in kept.items():
        s = same[(layout, way)]
        rows.append({"layout": layout, "way": way, "kept": sum(k) / len(k), "same_answer": sum(s) / len(s)})
        print(f"{layout:<24} {way:<8} {sum(k) / len(k):>14.2f} {sum(s) / len(s):>12.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
