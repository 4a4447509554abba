"""Study mode benchmark (issue 25): card quality, template vs GPT questions, grading, latency.

    python benchmarks/bench_quiz.py --index runs/quiz/corpus-index --index runs/quiz/dev2-index \
        --qg-model runs/qg/best --json runs/quiz/bench.json

Per index (build them first: notes-rag index corpus/ --out runs/quiz/corpus-index, and the same
for eval_sets/dev2/notes):

- *cards*: a seeded sample of answer spans, the first candidate of each that passes the cheap
  checks (well-formed, does not contain its answer, no duplicate) until `--cards` cards; then
  the round trip through our chat (chat/assistant.py, the default answer path) on each: the share
  passing, how many contain their own answer, and per writer kind.
- *template vs GPT*: on the same spans, our GPT's question (`--model`, the release, and each
  `--qg-model`): the share well-formed, the share containing its answer, the round-trip share.
- the cards and GPT questions are written to `--dump` (JSONL) for the hand check of well-formedness.

Grading (`--answers`, eval_sets/quiz/answers.jsonl: hand-written typed answers to 40 cards):
right answers accepted and wrong ones rejected, with the index's encoder similarity.

Latency (`--latency`): `notes-rag quiz` in a pty, time to the first card with an empty study
database (cards checked on the spot) and with the cards cached, and from each answer's rating to
the next card.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pty
import random
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from notes_rag.chat.assistant import Assistant
from notes_rag.model.checkpoint import load_model
from notes_rag.study.checks import duplicate_of, gives_away, round_trip, well_formed
from notes_rag.study.gpt_questions import write_question
from notes_rag.study.grading import grade
from notes_rag.study.make import candidates, spans_of
from notes_rag.study.passages import all_passages


def _cheap_ok(card, seen) -> bool:
    return well_formed(card) and not gives_away(card) and duplicate_of(card, dict(seen)) is None


def sample_cards(passages, n: int, seed: int = 0):
    """(passage, span, card) for the first `n` sampled spans whose template/cloze card passes the
    cheap checks."""
    spans = spans_of(passages)
    random.Random(seed).shuffle(spans)
    seen, out = {}, []
    for p, s in spans:
        card = next((c for c in candidates(p, s) if _cheap_ok(c, seen)), None)
        if card is None:
            continue
        duplicate_of(card, seen)
        out.append((p, s, card))
        if len(out) == n:
            break
    return out, len(spans)


def bench_cards(assistant, picked) -> dict:
    trips = [round_trip(c, assistant) for _, _, c in picked]
    by_writer: dict[str, list[bool]] = {}
    for (_, _, c), t in zip(picked, trips):
        by_writer.setdefault(c.writer, []).append(t.passed)
    return {
        "cards": len(picked),
        "round_trip": sum(t.passed for t in trips) / max(1, len(trips)),
        "answer_in_chat_reply": sum(t.holds_answer for t in trips) / max(1, len(trips)),
        "source_retrieved": sum(t.source_retrieved for t in trips) / max(1, len(trips)),
        "contain_own_answer": sum(gives_away(c) for _, _, c in picked),
        "by_writer": {w: {"n": len(v), "round_trip": sum(v) / len(v)} for w, v in by_writer.items()},
        "per_card": [
            {**c.to_dict(), "chat_answer": t.answer, "round_trip": t.passed} for (_, _, c), t in zip(picked, trips)
        ],
    }


def bench_gpt(assistant, model_dir: Path, picked) -> dict:
    """Our GPT's questions for the same spans (as question cards), checked like the template's."""
    from dataclasses import replace

    model, tok, _ = load_model(model_dir)
    rows, t0 = [], time.perf_counter()
    for p, s, card in picked:
        q = write_question(model, tok, p.label, p.text, s.answer, p.lang)
        gpt = replace(card, kind="question", question=q, answer=s.answer, writer="gpt")
        ok = well_formed(gpt) and not gives_away(gpt)
        trip = round_trip(gpt, assistant) if ok else None
        rows.append(
            {
                "question": q,
                "answer": s.answer,
                "place": card.place,
                "lang": card.lang,
                "template": card.question,
                "well_formed": well_formed(gpt),
                "contains_answer": gives_away(gpt),
                "round_trip": bool(trip and trip.passed),
            }
        )
    n = max(1, len(rows))
    return {
        "model": str(model_dir),
        "questions": len(rows),
        "seconds_per_question": (time.perf_counter() - t0) / n,
        "well_formed": sum(r["well_formed"] for r in rows) / n,
        "contain_own_answer": sum(r["contains_answer"] for r in rows),
        "round_trip": sum(r["round_trip"] for r in rows) / n,
        "per_question": rows,
    }


def bench_grading(answers: Path, retriever) -> dict:
    rows = [json.loads(line) for line in answers.read_text(encoding="utf-8").splitlines() if line.strip()]
    right = wrong = right_ok = wrong_ok = 0
    failures = []
    for r in rows:
        question = r["question"] if r.get("kind", "question") == "question" else ""
        for typed in r["right"]:
            g = grade(typed, r["answer"], question, retriever.similarity)
            right += 1
            right_ok += g.accepted
            if not g.accepted:
                failures.append({"card": r["question"], "typed": typed, "expected": "accept", **_why(g)})
        for typed in r["wrong"]:
            g = grade(typed, r["answer"], question, retriever.similarity)
            wrong += 1
            wrong_ok += not g.accepted
            if g.accepted:
                failures.append({"card": r["question"], "typed": typed, "expected": "reject", **_why(g)})
    return {
        "cards": len(rows),
        "right": right,
        "right_accepted": right_ok / max(1, right),
        "wrong": wrong,
        "wrong_rejected": wrong_ok / max(1, wrong),
        "failures": failures,
    }


def _why(g) -> dict:
    return {"key_share": round(g.key_share, 2), "similarity": None if g.similarity is None else round(g.similarity, 3)}


# -- latency through a pty -------------------------------------------------------------------------


def _read_until(fd, needle: bytes, timeout: float, buf: bytearray) -> bool:
    end = time.time() + timeout
    while needle not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf.extend(chunk)
    return needle in buf


def quiz_latency(index: Path, data: Path, n: int = 4, think: float = 0.0) -> dict:
    """Seconds from starting `notes-rag quiz` to its first card, and from each rating to the
    next card, answering every card with "x" after `think` seconds, and the suggested rating."""
    master, slave = pty.openpty()
    env = {**os.environ, "NOTES_RAG_DATA": str(data), "COLUMNS": "120", "TERM": "xterm"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "notes_rag", "quiz", "--index", str(index), "-n", str(n)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    buf, nexts, first = bytearray(), [], None
    try:
        for _ in range(n):
            if not _read_until(master, b"answer> ", 300, buf):
                break
            waited = time.perf_counter() - t0
            if first is None:
                first = waited
            else:
                nexts.append(waited)
            del buf[:]
            time.sleep(think)  # the student reads the card and types (the next cards are checked meanwhile)
            os.write(master, b"x\n")
            if not _read_until(master, b"rating> ", 60, buf):
                break
            del buf[:]
            t0 = time.perf_counter()
            os.write(master, b"\n")
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return {"first_card_s": first, "next_card_s": nexts, "next_card_max_s": max(nexts, default=None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, action="append", required=True)
    ap.add_argument("--model", type=Path, default=Path("models"), help="the chat's model (round trip)")
    ap.add_argument("--qg-model", type=Path, action="append", default=None, help="question writers (default: --model)")
    ap.add_argument("--no-template", action="store_true", help="skip the template cards' round trip")
    ap.add_argument("--no-grading", action="store_true")
    ap.add_argument("--no-gpt", action="store_true", help="skip our GPT's questions")
    ap.add_argument("--cards", type=int, default=50)
    ap.add_argument("--answers", type=Path, default=Path("eval_sets/quiz/answers.jsonl"))
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--think", type=float, default=0.0, help="latency: seconds the student takes per card")
    ap.add_argument("--dump", type=Path, default=Path("runs/quiz/cards.jsonl"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "sets": {},
    }
    dump = []
    for index in args.index if args.cards else []:  # --cards 0: latency only
        assistant = Assistant.open(index=index, model=args.model)
        picked, n_spans = sample_cards(all_passages(index), args.cards)
        if args.answers.is_file() and not args.no_grading and not report.get("grading"):
            report["grading"] = bench_grading(args.answers, assistant.retriever)
            _print_grading(report["grading"])
        res = {"spans": n_spans, "template": None if args.no_template else bench_cards(assistant, picked), "gpt": []}
        for m in [] if args.no_gpt else args.qg_model or [args.model]:
            res["gpt"].append(bench_gpt(assistant, m, picked))
        report["sets"][str(index)] = res
        dump += [{"index": str(index), **c} for c in (res["template"] or {}).get("per_card", [])]
        for g in res["gpt"]:
            dump += [{"index": str(index), "writer": g["model"], **q} for q in g["per_question"]]
        _print_set(index, res)
    if args.latency:
        with tempfile.TemporaryDirectory() as data:
            cold = quiz_latency(args.index[0], Path(data), think=args.think)
            warm = quiz_latency(args.index[0], Path(data), think=args.think)
        report["latency"] = {"think_s": args.think, "empty_database": cold, "second_session": warm}
        print("latency", json.dumps(report["latency"]))
    if "grading" in report:
        g = report["grading"]
        print(
            f"grading: right accepted {g['right_accepted']:.2f} of {g['right']}, wrong rejected "
            f"{g['wrong_rejected']:.2f} of {g['wrong']}"
        )
    args.dump.parent.mkdir(parents=True, exist_ok=True)
    args.dump.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dump), encoding="utf-8")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


def _print_grading(g: dict) -> None:
    print(
        f"grading: right accepted {g['right_accepted']:.2f} of {g['right']}, wrong rejected "
        f"{g['wrong_rejected']:.2f} of {g['wrong']}",
        flush=True,
    )
    for f in g["failures"]:
        print("  ", json.dumps(f, ensure_ascii=False), flush=True)


def _print_set(index: Path, res: dict) -> None:
    t = res["template"] or {}
    if t:
        print(
            f"{index}: {t['cards']} cards of {res['spans']} spans · round trip {t['round_trip']:.2f} "
            f"(answer in reply {t['answer_in_chat_reply']:.2f}, source retrieved {t['source_retrieved']:.2f}) · "
            f"contain own answer {t['contain_own_answer']} · by writer {json.dumps(t['by_writer'])}",
            flush=True,
        )
    for g in res["gpt"]:
        print(
            f"  gpt {g['model']}: well-formed {g['well_formed']:.2f} · contain own answer {g['contain_own_answer']} · "
            f"round trip {g['round_trip']:.2f} · {g['seconds_per_question']:.2f} s/question",
            flush=True,
        )


if __name__ == "__main__":
    main()
