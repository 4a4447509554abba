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

Reported: per layout and way, the share of pastes whose kept part holds the whole question; and
per layout, the share whose answer (the release's default turn: the model reads, the quote
answers) is the one the question typed alone gets, when retrieval reads the whole paste and only
the model its asking part, and when both read the asking part (what the chat does).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def old_turn(asst: Assistant, paste: str) -> str:
    """The answer when retrieval reads the whole paste and only the model its asking part."""
    from notes_rag.chat.format import ABSTAIN

    r = asst._retrieve([], paste, [])
    under = r.threshold is not None and r.top_cosine < r.threshold and not r.names_in_top
    if not r.sources or r.unknown_names or under:
        return ABSTAIN[r.lang]
    room = asst.model.config.seq_len - asst.cfg.max_new_tokens
    r.question = fit_question(asst.tok, paste, min(QUESTION_TOKENS, room))
    return [item for item in asst._write([], r, []) if isinstance(item, str)][-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qa", type=Path, required=True)
    ap.add_argument("--index", type=Path, default=Path("corpus/.notes-rag"))
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    qa = [json.loads(line) for line in args.qa.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [d["question"] for d in qa if d.get("question")][: args.n]
    asst = Assistant.open(args.index, args.model, AnswerConfig())
    tok = asst.tok
    import sqlite3

    from notes_rag.index.store import current_generation

    conn = sqlite3.connect(current_generation(args.index) / "chunks.sqlite")
    texts = [r[0] for r in conn.execute("SELECT text FROM chunks")]
    alone = {q: asst.ask([], q).text for q in questions}
    kept: dict[tuple, list[bool]] = {}
    same: dict[tuple, list[bool]] = {}
    rng = random.Random(0)
    for q in questions:
        for layout, paste in pastes(q, texts, rng).items():
            for way, fit in WAYS.items():
                short = fit(tok, paste, QUESTION_TOKENS)
                kept.setdefault((layout, way), []).append(" ".join(q.split()) in " ".join(short.split()))
            same.setdefault((layout, "retrieval whole"), []).append(old_turn(asst, paste) == alone[q])
            same.setdefault((layout, "retrieval asking"), []).append(asst.ask([], paste).text == alone[q])
    rows = []
    print(f"{len(questions)} questions of {args.qa.name}; budget {QUESTION_TOKENS} tokens")
    print(f"{'layout':<24} {'model reads':<8} {'question kept':>14}")
    for (layout, way), k in kept.items():
        rows.append({"layout": layout, "way": way, "kept": sum(k) / len(k)})
        print(f"{layout:<24} {way:<8} {sum(k) / len(k):>14.2f}")
    print(f"{'layout':<24} {'retrieval':<18} {'answer as alone':>16}")
    for (layout, how), v in same.items():
        rows.append({"layout": layout, "retrieval": how, "same_answer": sum(v) / len(v)})
        print(f"{layout:<24} {how:<18} {sum(v) / len(v):>16.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
